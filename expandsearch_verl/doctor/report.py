"""What a preflight check returns, and the pass/fail table `expandsearch doctor` prints."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import asdict, dataclass
from enum import StrEnum


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"  # the run starts, but something is likely wrong or slow
    FAIL = "fail"  # the run would fail (or silently train on the wrong thing)
    SKIP = "skip"  # not checked: switched off, or a check it depends on failed


@dataclass(frozen=True)
class CheckResult:
    """One line of the table: a check's verdict, what it saw, and the fix when it is not a pass."""

    check: str
    status: Status
    detail: str
    fix: str = ""


def passed(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Status.PASS, detail)


def warned(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, Status.WARN, detail, fix)


def failed(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, Status.FAIL, detail, fix)


def skipped(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Status.SKIP, detail)


def count(results: list[CheckResult], status: Status) -> int:
    return sum(result.status is status for result in results)


def render_table(results: list[CheckResult], width: int | None = None) -> str:
    """A table: CHECK, RESULT, DETAIL, and a `fix:` line under every warning and failure.

    What a user copies is never broken: a detail wraps at spaces only (not at the hyphen of a path,
    not inside a path or URL longer than the line), and a fix, a command or an override, is one
    line whatever the terminal's width.
    """
    width = width or shutil.get_terminal_size((120, 24)).columns
    name_width = max([len("CHECK"), *(len(result.check) for result in results)])
    indent = name_width + 2 + 6 + 2
    text_width = max(40, width - indent)
    lines = [f"{'CHECK':<{name_width}}  RESULT  DETAIL"]
    for result in results:
        detail = textwrap.wrap(result.detail, text_width, break_on_hyphens=False, break_long_words=False)
        shown = result.status.value.upper() if result.status is Status.FAIL else result.status.value
        lines.append(f"{result.check:<{name_width}}  {shown:<6}  {(detail or [''])[0]}")
        lines.extend(" " * indent + line for line in detail[1:])
        if result.fix:
            lines.append(" " * indent + "fix: " + " ".join(result.fix.split()))
    summary = (
        f"{len(results)} checks: {count(results, Status.PASS)} passed, {count(results, Status.WARN)} warnings, "
        f"{count(results, Status.FAIL)} failed, {count(results, Status.SKIP)} skipped"
    )
    return "\n".join([*lines, "", summary])


def render_json(results: list[CheckResult]) -> str:
    return json.dumps([asdict(result) for result in results], indent=2)
