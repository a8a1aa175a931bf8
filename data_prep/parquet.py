"""Deterministic, atomic parquet output: same rows -> same bytes; never a half-written file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.errors import DataPrepError
from data_prep.rows import ROW_SCHEMA


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Fail before any work if an output exists and `overwrite` is off."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise DataPrepError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace")


def write_tables(outputs: dict[Path, list[dict[str, Any]]]) -> None:
    """Write every `path -> rows` to a temporary file first, then rename them all into place.

    A failure while converting or writing any table leaves no output file touched.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, rows in outputs.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            staged.append((tmp, path))
            table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
            pq.write_table(table, tmp, compression="zstd")
    except BaseException as err:  # Ctrl-C included: remove what was staged, touch nothing else
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        if isinstance(err, pa.ArrowException | OSError):
            raise DataPrepError(f"writing parquet failed: {err}") from err
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
