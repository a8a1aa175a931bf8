"""retrieval_hit: the fast path must agree with the plain definition on every input."""

from __future__ import annotations

import string
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expandsearch_verl import retrieval_hit
from expandsearch_verl.qa_metrics import normalize_answer, normalized_golds
from expandsearch_verl.retrieval_hit import answer_in_passages


def reference(golds: list[str], passages: list[str]) -> bool:
    """Search-R1's is_retrieval_correct: a normalised gold inside a normalised passage."""
    return any(gold in normalize_answer(passage) for passage in passages for gold in golds)


# Small alphabets make hits (and near misses) frequent: case, punctuation inside words, articles,
# the separator, and the two characters whose lower case is ASCII.
WORDS = st.sampled_from(
    [
        "the",
        "a",
        "an",
        "Tower",
        "tower",
        "TOWER",
        "O'Neil",
        "oneil",
        "1,000",
        "1000",
        "Ünï",
        "ünï",
        "İstanbul",
        "i̇stanbul",
        "\u212aelvin",
        "kelvin",
        "東京",
        "–",
        "\x00",
        "x_y",
        "xy",
    ]
)
TEXT = st.lists(WORDS, max_size=8).map(" ".join) | st.text(
    alphabet=st.sampled_from([*"atheno ,'İ\u212ak\x00Ü"]), max_size=12
)


@settings(max_examples=1500, deadline=None)
@given(
    golds=st.lists(TEXT | st.text(max_size=6), max_size=3),
    passages=st.lists(TEXT | st.text(max_size=30), max_size=5),
)
@example(golds=["1000"], passages=["Cost: 1,000 dollars"])
@example(golds=["istanbul"], passages=["İstanbul"])
@example(golds=["kelvin"], passages=["\u212aelvin"])
@example(golds=["he"], passages=["the"])
@example(golds=["a b"], passages=["a\x00b"])
def test_fast_path_agrees_with_the_definition(golds: list[str], passages: list[str]):
    normalized = normalized_golds(golds)
    assert answer_in_passages(normalized, passages) == reference(normalized, passages)


def test_characters_lowering_to_ascii_are_exactly_the_known_ones():
    found = {
        chr(code)
        for code in range(128, sys.maxunicode + 1)
        if any(ord(char) < 128 for char in chr(code).lower())
    }
    assert found == set(retrieval_hit._LOWERS_TO_ASCII)
    # ... and lower() never produces ASCII punctuation, which the bytes path relies on too.
    assert not any(
        char in string.punctuation for code in range(128, sys.maxunicode + 1) for char in chr(code).lower()
    )


@pytest.mark.parametrize(
    ("gold", "passages", "hit"),
    [
        ("Gustave Eiffel", ["Eiffel Tower\nBuilt by GUSTAVE EIFFEL's company."], True),
        ("1000", ["It cost 1,000 francs."], True),
        ("eiffel tower", ["Eiffel", "Tower"], False),  # never across two passages
        ("Kraków", ["Wawel\nThe castle in KRAKÓW."], True),
        ("Kraków", ["Krakow, without the accent."], False),
        ("he", ["the"], False),  # "the" is an article, removed before matching
        ("Paris", [], False),
    ],
)
def test_examples(gold: str, passages: list[str], hit: bool):
    assert answer_in_passages(normalized_golds([gold]), passages) is hit


def test_no_golds_no_hit():
    assert answer_in_passages([], ["anything"]) is False
