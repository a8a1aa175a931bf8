"""Corpus store: wiki-18-style JSONL converted once into a memory-mapped form that loads in milliseconds.

wiki-18 (21M passages, ~14 GB of JSONL) takes minutes to parse, and `datasets.load_dataset('json')`
builds a multi-GB Arrow cache on the first start. Here the JSONL is streamed once into a directory:

    contents.bin   UTF-8 `contents` of every passage, concatenated       (memory-mapped)
    offsets.npy    int64 (n + 1,) byte offsets into contents.bin           (memory-mapped)
    ids.bin        UTF-8 passage ids, concatenated; id_offsets.npy likewise
    meta.json      passage count, source file identity, content fingerprint, format version

Loading maps the files and reads `meta.json`; a lookup slices the map and decodes only the passages
asked for. `passages` gathers the offsets of a whole response in one numpy call and slices an
`mmap` (about 1 µs a passage; slicing an `np.memmap` built a memmap object per slice, 9 µs). Row
order is the JSONL line order, which is the row order of the faiss index built over it (Search-R1's
`e5_Flat.index` included).

Input rows have `id` and `contents` (`"Title"\\ntext`), or `title` and `text` (then `contents` is
written as `"title"\\ntext`, the wiki-18 convention).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import mmap
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "meta.json"


class CorpusError(ValueError):
    """The corpus file or directory cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Passage:
    """One passage as clients see it: `contents` exactly as in the corpus, title/text split out."""

    id: str
    contents: str
    title: str
    text: str


def split_contents(contents: str) -> tuple[str, str]:
    """Split wiki-18 `contents` into (title, text): the first line without its quotes, then the rest."""
    title, _, text = contents.partition("\n")
    title = title.strip()
    if len(title) >= 2 and title[0] == '"' and title[-1] == '"':
        title = title[1:-1]
    return title, text


def _row_fields(row: object, line_no: int, source: Path) -> tuple[str, str]:
    """(id, contents) of one JSONL row, or a CorpusError naming the line and the fix."""
    if not isinstance(row, dict):
        raise CorpusError(f"{source}:{line_no}: expected a JSON object, got {type(row).__name__}")
    contents = row.get("contents")
    if contents is None and "text" in row:
        title, text = row.get("title", ""), row["text"]
        if not isinstance(title, str) or not isinstance(text, str):
            raise CorpusError(f"{source}:{line_no}: 'title' and 'text' must be strings")
        contents = f'"{title}"\n{text}'
    if not isinstance(contents, str):
        raise CorpusError(
            f"{source}:{line_no}: a passage needs 'contents' (\"Title\"\\ntext) or 'title' + 'text'; "
            f"found keys {sorted(row)}"
        )
    passage_id = row.get("id", line_no - 1)
    if not isinstance(passage_id, str | int) or isinstance(passage_id, bool):
        raise CorpusError(f"{source}:{line_no}: 'id' must be a string or an integer")
    return str(passage_id), contents


def _open_text(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def source_key(path: Path) -> str:
    """A short key for a source file: its absolute path, size and modification time."""
    stat = path.stat()
    raw = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{FORMAT_VERSION}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def convert(source: Path, target: Path, show_progress: bool = False) -> Path:
    """Stream `source` JSONL(.gz) into a store directory at `target` (written atomically)."""
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        meta = _write_store(source, tmp, show_progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written store behind
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    logger.info("converted %s (%d passages) into %s", source, meta["num_passages"], target)
    return target


def _write_store(source: Path, tmp: Path, show_progress: bool) -> dict:
    from tqdm import tqdm

    fingerprint = hashlib.blake2b(digest_size=16)
    offsets, id_offsets = [0], [0]
    with (
        _open_text(source) as lines,
        (tmp / "contents.bin").open("wb") as contents_out,
        (tmp / "ids.bin").open("wb") as ids_out,
    ):
        for line_no, line in enumerate(
            tqdm(lines, desc="corpus", unit=" lines", disable=not show_progress), 1
        ):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{source}:{line_no}: not valid JSON ({exc.msg})") from None
            passage_id, contents = _row_fields(row, line_no, source)
            blob, id_blob = contents.encode(), passage_id.encode()
            contents_out.write(blob)
            ids_out.write(id_blob)
            fingerprint.update(id_blob + b"\0" + blob + b"\0")
            offsets.append(offsets[-1] + len(blob))
            id_offsets.append(id_offsets[-1] + len(id_blob))
    if len(offsets) == 1:
        raise CorpusError(f"{source}: the corpus has no passages")
    np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    np.save(tmp / "id_offsets.npy", np.asarray(id_offsets, dtype=np.int64))
    stat = source.stat()
    meta = {
        "format_version": FORMAT_VERSION,
        "num_passages": len(offsets) - 1,
        "fingerprint": fingerprint.hexdigest(),
        "source": str(source.resolve()),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


class CorpusStore:
    """Memory-mapped passages addressed by row position (the faiss / BM25 row number)."""

    def __init__(self, directory: Path):
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise CorpusError(f"{directory} is not a converted corpus (no {META_FILE}); pass the JSONL file")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise CorpusError(
                f"{directory}: corpus format {meta.get('format_version')}, expected {FORMAT_VERSION}; "
                "delete the directory so it is converted again"
            )
        self.directory = directory
        self.fingerprint: str = meta["fingerprint"]
        # plain ndarray views of the maps: indexing them skips np.memmap's Python-level __getitem__
        self._offsets = np.asarray(np.load(directory / "offsets.npy", mmap_mode="r"))
        self._id_offsets = np.asarray(np.load(directory / "id_offsets.npy", mmap_mode="r"))
        self._contents = _map_bytes(directory / "contents.bin")
        self._ids = _map_bytes(directory / "ids.bin")
        self.size = int(meta["num_passages"])

    @classmethod
    def open(cls, path: str | Path, cache_dir: str | Path, show_progress: bool = False) -> CorpusStore:
        """Open a converted directory, or convert a JSONL(.gz) file once into `cache_dir` and open that."""
        path = Path(path).expanduser()
        if path.is_dir():
            return cls(path)
        if not path.is_file():
            raise CorpusError(f"corpus not found: {path}")
        target = Path(cache_dir).expanduser() / "corpora" / f"{path.name}-{source_key(path)}"
        if not (target / META_FILE).is_file():
            convert(path, target, show_progress=show_progress)
        return cls(target)

    def __len__(self) -> int:
        return self.size

    def contents(self, position: int) -> str:
        start, end = self._offsets[position : position + 2].tolist()
        return self._contents[start:end].decode()

    def passage_id(self, position: int) -> str:
        start, end = self._id_offsets[position : position + 2].tolist()
        return self._ids[start:end].decode()

    def passage(self, position: int) -> Passage:
        return self.passages([position])[0]

    def passages(self, positions: Sequence[int]) -> list[Passage]:
        """The passages at `positions` (corpus rows), in order."""
        rows = _rows(positions)
        starts, ends = self._offsets[rows].tolist(), self._offsets[rows + 1].tolist()
        ids = self.passage_ids(rows)
        out = []
        for passage_id, start, end in zip(ids, starts, ends, strict=True):
            contents = self._contents[start:end].decode()
            out.append(Passage(passage_id, contents, *split_contents(contents)))
        return out

    def passage_ids(self, positions: Sequence[int] | np.ndarray) -> list[str]:
        """The ids of the passages at `positions` (corpus rows), in order."""
        rows = _rows(positions)
        ids = self._ids
        return [
            ids[start:end].decode()
            for start, end in zip(
                self._id_offsets[rows].tolist(), self._id_offsets[rows + 1].tolist(), strict=True
            )
        ]

    def iter_contents(self, start: int = 0, stop: int | None = None) -> Iterator[str]:
        """Contents of rows [start, stop) in order (index building)."""
        for position in range(start, self.size if stop is None else stop):
            yield self.contents(position)


def _rows(positions: Sequence[int] | np.ndarray) -> np.ndarray:
    """Positions as an int64 array; a negative one (an index's "no hit") would wrap around, so refuse it."""
    rows = np.asarray(positions, dtype=np.int64)
    if rows.size and rows.min() < 0:
        raise IndexError(f"corpus positions must be >= 0, got {rows.min()}")
    return rows


def _map_bytes(path: Path) -> mmap.mmap | bytes:
    """A read-only map of `path`, sliced into bytes (b"" for an empty file, which mmap refuses)."""
    if path.stat().st_size == 0:
        return b""
    with path.open("rb") as file:
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)  # the map outlives the file object
