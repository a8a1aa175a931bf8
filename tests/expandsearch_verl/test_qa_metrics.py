"""Answer metrics: SQuAD normalisation (differential against verl), EM / F1 / sub-EM, gold parsing."""

from __future__ import annotations

import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from verl.utils.reward_score import search_r1_like_qa_em as verl_qa

from expandsearch_verl.qa_metrics import (
    ZERO_SCORES,
    golden_answers,
    normalize_answer,
    normalized_golds,
    score_answer,
    strip_punctuation,
)

# Text that exercises every step of the normalisation: articles at word boundaries and inside
# words, ASCII punctuation, Unicode white space and punctuation, case pairs with odd lower cases.
TRICKY = st.text(
    alphabet=st.sampled_from(
        [
            *"aAnNtThHeEsx19 ",
            *string.punctuation,
            "\t",
            "\n",
            "\xa0",
            "\u2003",
            "\x1f",
            "\x00",
            "é",
            "É",
            "Σ",
            "ß",
            "İ",
            "\u212a",
            "’",
            "–",
            "\u0301",
            "東",
            "\ud800",
        ]
    ),
    max_size=40,
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(), TRICKY))
def test_normalize_answer_equals_verl_on_any_string(text: str):
    assert normalize_answer(text) == verl_qa.normalize_answer(text)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_strip_punctuation_is_the_per_character_filter(text: str):
    assert strip_punctuation(text) == "".join(ch for ch in text if ch not in string.punctuation)


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  the  Beatles!  ", "Beatles"),
        ("U.S.A.", "usa"),
        ("1,000", "1000"),
        ("an apple", "Apple"),
        ("Zürich", "zürich"),
        ("ZÜRICH", "Zürich"),
        ("São Paulo", "são paulo"),
        ("東京", "東京"),
    ],
)
def test_exact_match_after_normalisation(prediction: str, gold: str):
    assert score_answer(prediction, normalized_golds([gold])) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [("Zurich", "Zürich"), ("1.000", "1,0000"), ("the one", "one two"), ("Paris, France", "Paris")],
)
def test_no_exact_match(prediction: str, gold: str):
    assert score_answer(prediction, normalized_golds([gold])).em == 0.0


def test_any_gold_counts_and_f1_is_the_best_over_golds():
    golds = normalized_golds(["Barack Obama", "Obama", "President Barack Hussein Obama"])
    assert score_answer("obama", golds).em == 1.0
    scores = score_answer("Barack H. Obama", golds)
    assert scores.em == 0.0
    # vs "barack obama": precision 2/3, recall 1 -> 0.8; vs "obama": 2*(1/3*1)/(4/3) = 0.5
    assert scores.f1 == pytest.approx(0.8)
    assert scores.subem == 1.0  # "obama" is inside "barack h obama"


def test_token_f1_counts_repeated_tokens_once_per_occurrence():
    scores = score_answer("new new york", normalized_golds(["New York City"]))
    # common = {new: 1, york: 1} = 2; precision 2/3, recall 2/3
    assert scores.f1 == pytest.approx(2 / 3)
    assert scores.subem == 0.0


@pytest.mark.parametrize(
    ("prediction", "gold", "f1"),
    [
        ("yes", "yes it was", 0.0),
        ("yes it was", "yes", 0.0),
        ("no", "no", 1.0),
        ("no answer", "noanswer", 0.0),
    ],
)
def test_f1_gives_yes_no_no_partial_credit(prediction: str, gold: str, f1: float):
    assert score_answer(prediction, normalized_golds([gold])).f1 == f1


@pytest.mark.parametrize("prediction", [None, "", "   ", "\n\t"])
def test_missing_or_blank_prediction_scores_zero(prediction):
    assert score_answer(prediction, normalized_golds(["the"])) is ZERO_SCORES
    assert score_answer(prediction, normalized_golds(["Paris"])) is ZERO_SCORES


def test_golds_that_normalise_to_nothing_are_ignored():
    assert normalized_golds(["The", "...", "", "  A ", "Paris"]) == ["paris"]
    # verl's subem_check matches an empty gold against anything; ours does not.
    assert verl_qa.subem_check("anything", ["The"]) == 1
    assert score_answer("anything", normalized_golds(["The"])) == ZERO_SCORES
    # An answer that normalises to nothing is still an answer, just never a correct one.
    assert score_answer("the", normalized_golds(["Paris"])) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("ground_truth", "expected"),
    [
        ({"target": ["Paris", "City of Light"]}, ["Paris", "City of Light"]),
        ({"target": np.array(["Paris", "Lutetia"], dtype=object)}, ["Paris", "Lutetia"]),
        ({"target": np.array(["Paris"])}, ["Paris"]),  # numpy unicode dtype, as pandas may hand it
        ({"target": "Paris"}, ["Paris"]),
        (["Paris", None], ["Paris"]),
        (("Paris",), ["Paris"]),
        (np.array(["1889"]), ["1889"]),
        ("Paris", ["Paris"]),
        (1889, ["1889"]),
        (np.int64(42), ["42"]),
        ({"target": []}, []),
        (None, []),
    ],
)
def test_golden_answers_accepts_every_shape_verl_and_dumps_use(ground_truth, expected):
    assert golden_answers(ground_truth) == expected


@pytest.mark.parametrize(
    ("ground_truth", "message"),
    [
        ({"answers": ["Paris"]}, "got a mapping with keys ['answers']"),
        ({"target": [["Paris"]]}, "each gold answer must be a string, got list"),
        ({"target": {"a": 1}}, "must be a string or a list of strings, got dict"),
        (object(), "must be a string or a list of strings, got object"),
    ],
)
def test_golden_answers_rejects_malformed_ground_truth_with_the_reason(ground_truth, message: str):
    with pytest.raises(ValueError, match=r"ground_truth|gold answer") as error:
        golden_answers(ground_truth)
    assert message in str(error.value)
