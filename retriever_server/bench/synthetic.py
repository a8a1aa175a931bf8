"""Synthetic wiki-18-style corpora and query variants, for tests and the benchmark.

Each passage describes one made-up town with unique facts (founder, year, river, export), so a
query about a town has one right answer and the variants of a turn ("who founded X", "X founder",
"X history") overlap the way ExpandSearch's do.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

_SYLLABLES = (
    "al",
    "bar",
    "cor",
    "dun",
    "el",
    "fen",
    "gar",
    "hol",
    "is",
    "jor",
    "kel",
    "lun",
    "mor",
    "nor",
    "ost",
    "pel",
    "quin",
    "ros",
    "sel",
    "tor",
    "ul",
    "ver",
    "wic",
    "yar",
    "zen",
)
_EXPORTS = ("wool", "copper", "salt", "timber", "glass", "cheese", "silk", "tin", "barley", "amber")
_KINDS = ("market town", "river port", "hill village", "mining town", "fishing harbour", "cathedral city")


def town_name(i: int) -> str:
    """A unique, pronounceable name for town i (base-25 syllables)."""
    parts = []
    i += 25 * 25  # at least three syllables
    while i:
        i, digit = divmod(i, len(_SYLLABLES))
        parts.append(_SYLLABLES[digit])
    return "".join(parts).capitalize()


def passage(i: int) -> dict:
    rng = random.Random(i)
    name, founder = town_name(i), town_name(i + 7919).capitalize() + " " + town_name(i + 104729)
    text = (
        f"{name} is a {rng.choice(_KINDS)} on the river {town_name(i + 31337)}. It was founded in "
        f"{rng.randint(900, 1900)} by {founder}. Its main export is {rng.choice(_EXPORTS)}, and it has about "
        f"{rng.randint(1, 900) * 100} inhabitants. The {name} fair is held every spring in the old square."
    )
    return {"id": str(i), "contents": f'"{name}"\n{text}'}


def write_synthetic_corpus(path: Path, n_passages: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for i in range(n_passages):
            out.write(json.dumps(passage(i)) + "\n")
    return path


def synthetic_store(workdir: Path, n_passages: int):
    """The CorpusStore of `n_passages` synthetic passages, written and converted once under `workdir`."""
    from retriever_server.index.corpus import CorpusStore

    root = workdir / f"synthetic-{n_passages}"
    corpus_file = root / "corpus.jsonl"
    if not corpus_file.is_file():
        write_synthetic_corpus(corpus_file, n_passages)
    return CorpusStore.open(corpus_file, root / "cache")


def query_variants(i: int) -> list[str]:
    """Three variants of one information need about town i, as an expanding policy writes them."""
    name = town_name(i)
    return [f"who founded {name}", f"{name} founder and founding year", f"history of the town of {name}"]
