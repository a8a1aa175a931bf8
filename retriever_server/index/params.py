"""`params.json`: what an index directory was built from, checked before it is served.

An index is a directory holding its artifacts and a params.json (kind, encoder, dim, corpus size and
fingerprint, builder version). `check_params` refuses a mismatch with a message that says the fix,
instead of serving vectors of one encoder against queries of another, or rows of another corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

BUILDER_VERSION = 1
PARAMS_FILE = "params.json"


class IndexMismatch(ValueError):
    """The index does not fit the corpus or the encoder it is served with."""


def write_params(directory: Path, params: dict) -> None:
    """Write params.json atomically (it marks the index directory as complete)."""
    params = {"builder_version": BUILDER_VERSION, **params}
    tmp = directory / (PARAMS_FILE + ".tmp")
    tmp.write_text(json.dumps(params, indent=1, sort_keys=True))
    os.replace(tmp, directory / PARAMS_FILE)


def read_params(directory: Path) -> dict:
    path = directory / PARAMS_FILE
    if not path.is_file():
        raise IndexMismatch(f"{directory}: no {PARAMS_FILE}; the build did not finish, run build-index again")
    return json.loads(path.read_text())


def identity(params: dict) -> str:
    """A short hash of the params: part of every cache key, so a rebuilt index never serves stale hits."""
    return hashlib.blake2b(json.dumps(params, sort_keys=True).encode(), digest_size=8).hexdigest()


def check_params(
    directory: Path,
    params: dict,
    *,
    kind: str,
    corpus_size: int,
    corpus_fingerprint: str,
    encoder: dict | None = None,
) -> None:
    """Raise IndexMismatch listing every difference between the index and what it is served with."""
    problems = []
    if params.get("kind") != kind:
        problems.append(f"it is a {params.get('kind')!r} index, served as {kind!r}")
    if params.get("builder_version") != BUILDER_VERSION:
        problems.append(
            f"builder version {params.get('builder_version')}, this server reads {BUILDER_VERSION}"
        )
    if params.get("corpus_size") != corpus_size or params.get("corpus_fingerprint") != corpus_fingerprint:
        problems.append(
            f"built over a corpus of {params.get('corpus_size')} passages (fingerprint "
            f"{params.get('corpus_fingerprint')}), served with one of {corpus_size} ({corpus_fingerprint})"
        )
    if encoder is not None:
        built = params.get("encoder", {})
        for key, value in encoder.items():
            if built.get(key) != value:
                problems.append(f"encoder {key}={built.get(key)!r} at build time, {value!r} now")
    if problems:
        raise IndexMismatch(
            f"index {directory} does not match: "
            + "; ".join(problems)
            + ". Serve it with the corpus and encoder settings it was built with, or rebuild it with build-index."
        )
