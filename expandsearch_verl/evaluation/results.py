"""The output directory of an evaluation: resumable, and never half-written.

    trajectories.jsonl   one record per finished trajectory (records.py), appended as it finishes
    run.json             the settings the results depend on
    summary.json         the aggregate (summary.py), rewritten at the end of every run
    em_per_dataset.png   with --plot

Each record is appended as one complete line in a single `write` to a file opened with O_APPEND,
so a crash or a kill leaves at most a half-written last line; the next run drops it (and says so)
and skips the (data_source, id) pairs already present. JSON files are written to a temporary file
and renamed into place. A rerun whose settings differ from `run.json` is refused: one file never
mixes two evaluations (use another --output-dir, or --overwrite to start again).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TRAJECTORIES = "trajectories.jsonl"
RUN = "run.json"
SUMMARY = "summary.json"
PLOT = "em_per_dataset.png"


class ResultsError(ValueError):
    """The output directory cannot be used as it is; the message says why and what to do."""


def write_json_atomic(path: Path, value: Any) -> None:
    """`value` as indented JSON at `path`, all or nothing."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(value, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def load_records(path: Path) -> list[dict[str, Any]]:
    """The complete records of a trajectories file; a half-written last line is cut off the file.

    Raises:
        ResultsError: a complete line that is not a record (the file is not ours, or was edited).
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    records, end = [], 0
    while end < len(data):
        newline = data.find(b"\n", end)
        if newline < 0:  # no newline: the write of the last record was cut short
            logger.warning("%s: dropping a half-written last line (%d bytes)", path, len(data) - end)
            with path.open("r+b") as handle:
                handle.truncate(end)
            break
        line, lineno = data[end:newline], len(records) + 1
        end = newline + 1
        try:
            record = json.loads(line)
        except ValueError:
            raise ResultsError(
                f"{path}:{lineno}: not a JSON record; move the file away or use --overwrite"
            ) from None
        if not isinstance(record, dict) or not {"data_source", "id"} <= set(record):
            raise ResultsError(f"{path}:{lineno}: not an evaluation record (no data_source/id)")
        records.append(record)
    return records


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as {"a.b.c": leaf}, so a refusal names the very setting that changed."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class ResultsDir:
    """`trajectories.jsonl` and its companions in one directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.trajectories = self.directory / TRAJECTORIES
        self.summary = self.directory / SUMMARY
        self.plot = self.directory / PLOT
        self._fd: int | None = None

    def open(self, run: dict[str, Any], *, overwrite: bool = False) -> list[dict[str, Any]]:
        """Prepare the directory for a run with `run` settings; returns the records already there.

        Raises:
            ResultsError: the directory holds a run with other settings, or unreadable records.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        run = json.loads(json.dumps(run))  # compared as JSON reads it back (tuples are lists)
        run_file = self.directory / RUN
        if overwrite:
            for path in (self.trajectories, self.summary, self.plot, run_file):
                path.unlink(missing_ok=True)
        elif run_file.exists():
            try:
                previous = json.loads(run_file.read_text())
            except ValueError:
                raise ResultsError(f"{run_file} is not JSON; move it away or use --overwrite") from None
            before, after = _flatten(previous), _flatten(run)
            changed = sorted(key for key in {*before, *after} if before.get(key) != after.get(key))
            if changed:
                details = "; ".join(
                    f"{key}: {before.get(key)!r} -> {after.get(key)!r}" for key in changed[:4]
                )
                raise ResultsError(
                    f"{self.directory} holds an evaluation with other settings ({details}); "
                    "choose another --output-dir, or --overwrite to start again"
                )
        records = load_records(self.trajectories)
        write_json_atomic(run_file, run)
        self._fd = os.open(self.trajectories, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return records

    def append(self, record: dict[str, Any]) -> None:
        """One record as one line, in one write."""
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        written = os.write(self._fd, line)
        if written != len(line):  # a short write of a regular file: the disk is full
            raise OSError(f"{self.trajectories}: only {written} of {len(line)} bytes written (disk full?)")

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
