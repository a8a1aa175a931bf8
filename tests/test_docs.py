"""The documents a clone needs are in the clone: no path outside the repository, no dead relative link."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# A reference to the design notes that lived outside the repository, or to a folder beside it.
OUTSIDE = re.compile(r"DESIGN\.md|\.\./shared|/work/shared")
# Markdown links and images: [text](target) / ![alt](target); the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [REPO_ROOT / name for name in out.split("\0") if name]


def markdown_pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def relative_links(text: str) -> list[str]:
    """Link targets that are paths in this repository (not URLs, not in-page anchors), code blocks aside."""
    targets = LINK.findall(FENCE.sub("", text))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def anchors(text: str) -> set[str]:
    """The heading anchors GitHub makes: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def test_no_tracked_file_refers_outside_the_repository():
    this = Path(__file__).resolve()
    offenders = []
    for path in tracked_files():
        if path == this or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [
            f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}"
            for n, line in enumerate(text.splitlines(), 1)
            if OUTSIDE.search(line)
        ]
    assert not offenders, "references to files outside the repository:\n" + "\n".join(offenders)


def test_the_design_page_and_the_reference_pages_exist():
    docs = REPO_ROOT / "docs"
    assert (docs / "design.md").is_file()
    assert len(markdown_pages()) > 2, "README.md plus the reference pages in docs/"


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(page: Path):
    text = page.read_text(encoding="utf-8")
    dead = []
    for target in relative_links(text):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve()
        found = resolved.exists() and resolved.is_relative_to(REPO_ROOT)
        if found and anchor and resolved.suffix == ".md":
            found = anchor in anchors(resolved.read_text(encoding="utf-8"))
        if not found:
            dead.append(target)
    for target in LINK.findall(FENCE.sub("", text)):
        if target.startswith("#") and target[1:] not in anchors(text):
            dead.append(target)
    assert not dead, f"{page.relative_to(REPO_ROOT)}: links to files or headings that do not exist: {dead}"


def test_the_link_finder_finds_links_and_skips_urls_anchors_and_code():
    text = (
        "See [design](docs/design.md#reward) and ![plot](img/a.png), [web](https://x.org/a.md), "
        "[here](#quick-start), [mail](mailto:a@b).\n```\n[not a link](nowhere.md)\n```\n"
    )
    assert relative_links(text) == ["docs/design.md#reward", "img/a.png"]


def test_anchors_follow_github_slugs():
    text = "# Quick start (CPU, offline, Python 3.11)\n## The demo: `expandsearch demo`\n## Notes\n## Notes\n"
    assert anchors(text) == {
        "quick-start-cpu-offline-python-311",
        "the-demo-expandsearch-demo",
        "notes",
        "notes-1",
    }
