"""compute_score: the reward table, extra_info handling, robustness, and parity with verl's EM."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from verl.utils.reward_score import search_r1_like_qa_em as verl_qa

from expandsearch_verl.response_format import extract_answer
from expandsearch_verl.reward import (
    CORRECT_MALFORMED,
    CORRECT_WELL_FORMED,
    NO_ANSWER_MALFORMED,
    SCORE_KEYS,
    WRONG_MALFORMED,
    WRONG_WELL_FORMED,
    RewardTable,
    compute_score,
)

GOLD = {"target": ["Gustave Eiffel", "Eiffel"]}
SQUEEZED = "The tower's designer was Gustave Eiffel."


def tags_response(answer: str | None, well_formed: bool = True, observation: str = SQUEEZED) -> str:
    text = f"<think>who?</think>\n<search>eiffel tower designer</search>\n\n<information>{observation}</information>\n\n"
    text += "<think>found it</think>\n"
    if answer is not None:
        text += f"<answer>{answer}</answer>"
    return text if well_formed else "Sure! " + text


def tool_call_response(answer: str | None, well_formed: bool = True, observation: str = SQUEEZED) -> str:
    call = json.dumps(
        {"name": "search", "arguments": {"query_list": ["eiffel tower designer", "who built it"]}}
    )
    text = f"<think>who?</think>\n<tool_call>\n{call}\n</tool_call>\nuser\n<tool_response>\n{observation}\n"
    text += "</tool_response>\nassistant\n<think>found it</think>\n"
    if answer is not None:
        text += f"<answer>{answer}</answer>"
    return text if well_formed else "Sure! " + text


BUILDERS = {"tags": tags_response, "tool_call": tool_call_response}
CELLS = [
    ("the Gustave Eiffel.", True, CORRECT_WELL_FORMED),
    ("Gustave Eiffel", False, CORRECT_MALFORMED),
    ("Jules Verne", True, WRONG_WELL_FORMED),
    ("Jules Verne", False, WRONG_MALFORMED),
    (None, False, NO_ANSWER_MALFORMED),
    ("   ", False, NO_ANSWER_MALFORMED),  # a blank answer is no answer (and never well-formed)
]


def check_shape(scores: dict) -> None:
    assert tuple(scores) == SCORE_KEYS
    for key, value in scores.items():
        expected = int if key.startswith("num_") else float
        assert type(value) is expected, (key, value)
        assert math.isfinite(value) and value >= 0, (key, value)


@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
@pytest.mark.parametrize(("answer", "well_formed", "reward"), CELLS)
def test_reward_table_cells(protocol: str, answer, well_formed: bool, reward: float):
    response = BUILDERS[protocol](answer, well_formed)
    scores = compute_score("nq", response, GOLD, {"protocol": protocol})
    check_shape(scores)
    assert scores["score"] == reward
    assert scores["format_ok"] == float(well_formed)
    assert scores["has_answer"] == float(bool(answer and answer.strip()))
    assert (scores["num_searches"], scores["num_queries"]) == ((1, 1) if protocol == "tags" else (1, 2))
    plain = compute_score("nq", response, GOLD, {"protocol": protocol}, shaping=False)
    assert (
        plain["score"] == plain["em"] == (1.0 if reward in (CORRECT_WELL_FORMED, CORRECT_MALFORMED) else 0.0)
    )


def test_defaults_are_the_published_values_and_no_answer_well_formed_cannot_occur():
    assert (
        CORRECT_WELL_FORMED,
        CORRECT_MALFORMED,
        WRONG_WELL_FORMED,
        WRONG_MALFORMED,
        NO_ANSWER_MALFORMED,
    ) == (
        1.0,
        0.8,
        0.2,
        0.1,
        0.0,
    )
    for response in ("<think>a</think>", "<think>a</think><answer></answer>", "<think>a</think><answer>x"):
        scores = compute_score("nq", response, GOLD)
        assert (scores["has_answer"], scores["format_ok"]) == (0.0, 0.0)


def test_every_value_is_overridable():
    table = {
        "correct_well_formed": 2,
        "correct_malformed": np.float32(1.5),
        "wrong_well_formed": -0.5,
        "wrong_malformed": 0.25,
        "no_answer_malformed": -1.0,
    }
    got = [compute_score("nq", tags_response(a, ok), GOLD, **table)["score"] for a, ok, _ in CELLS[:5]]
    assert got == [2.0, 1.5, -0.5, 0.25, -1.0]


@pytest.mark.parametrize("shaping", [False, np.bool_(False), "false", "False"])
def test_shaping_off_makes_the_score_em(shaping):
    wrong = compute_score("nq", tags_response("Jules Verne"), GOLD, shaping=shaping)
    assert wrong["score"] == 0.0
    right = compute_score("nq", tags_response("Eiffel", well_formed=False), GOLD, shaping=shaping)
    assert right["score"] == 1.0


def test_retrieval_bonus_goes_to_wrong_well_formed_answers_that_retrieved_the_gold():
    info = {"retrieved_passages": ["Eiffel Tower\nDesigned by the company of Gustave Eiffel."]}
    assert compute_score("nq", tags_response("Verne"), GOLD, info, retrieval_bonus=0.1)[
        "score"
    ] == pytest.approx(0.3)
    no_hit = {"retrieved_passages": ["Jules Verne\nA French novelist."]}
    assert compute_score("nq", tags_response("Verne"), GOLD, no_hit, retrieval_bonus=0.1)["score"] == 0.2
    malformed = compute_score("nq", tags_response("Verne", False), GOLD, info, retrieval_bonus=0.1)
    assert malformed["score"] == WRONG_MALFORMED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"wrong_well_formed": "0.2x"},
            "reward_kwargs.wrong_well_formed must be a finite number, got '0.2x' (str)",
        ),
        ({"correct_well_formed": float("nan")}, "reward_kwargs.correct_well_formed must be a finite number"),
        ({"wrong_malformed": float("inf")}, "must be a finite number, got inf"),
        ({"correct_malformed": True}, "must be a finite number, got True (bool)"),
        ({"shaping": "sometimes"}, "reward_kwargs.shaping must be true or false, got 'sometimes'"),
        ({"shaping": 1}, "reward_kwargs.shaping must be true or false, got 1"),
    ],
)
def test_bad_reward_kwargs_fail_on_the_first_call_with_the_key(kwargs: dict, message: str):
    with pytest.raises(ValueError) as error:
        compute_score("nq", tags_response("x"), GOLD, **kwargs)
    assert message in str(error.value)


def test_unknown_kwargs_are_ignored_verl_ones_silently_others_with_one_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = compute_score(
            "nq", tags_response("Eiffel"), GOLD, reward_router_address=None, reward_model_tokenizer=None
        )
    assert scores["score"] == 1.0
    with pytest.warns(
        UserWarning, match="ignores the keyword 'structure_format_score'; reward_kwargs it knows: "
    ):
        assert compute_score("nq", tags_response("Eiffel"), GOLD, structure_format_score=0.5)["score"] == 1.0


def test_table_from_kwargs_without_overrides_is_the_default():
    assert RewardTable.from_kwargs({"unrelated": 1}) is RewardTable.from_kwargs({})


def test_loop_counts_win_over_the_text_and_may_be_numpy():
    info = {"protocol": "tags", "num_searches": np.int64(3), "num_queries": np.array(7)}
    scores = compute_score("nq", tags_response("Eiffel"), GOLD, info)
    assert (scores["num_searches"], scores["num_queries"]) == (3, 7)
    assert type(scores["num_searches"]) is int


@pytest.mark.parametrize("bad", ["3", -1, 2.5, float("nan"), [1, 2], None])
def test_unusable_loop_counts_fall_back_to_the_text(bad):
    scores = compute_score("nq", tags_response("Eiffel"), GOLD, {"num_searches": bad, "num_queries": bad})
    assert (scores["num_searches"], scores["num_queries"]) == (1, 1)


def test_retrieval_hit_uses_the_raw_passages_not_the_squeezer_text():
    response = tool_call_response("Verne", observation="The designer was Gustave Eiffel.")
    info = {
        "protocol": "tool_call",
        "retrieved_passages": np.array(["Paris\nCapital of France."], dtype=object),
    }
    assert compute_score("nq", response, GOLD, info)["retrieval_hit"] == 0.0
    info["retrieved_passages"] = [
        "Paris\nCapital of France.",
        "Eiffel Tower\nBuilt by Gustave Eiffel's firm.",
    ]
    squeezed_without_answer = tool_call_response("Verne", observation="Nothing relevant was found.")
    assert compute_score("nq", squeezed_without_answer, GOLD, info)["retrieval_hit"] == 1.0


def test_retrieval_hit_falls_back_to_observations_only_when_the_loop_said_nothing():
    response = tags_response("Verne", observation="Doc 1 (Title: Eiffel Tower) Gustave Eiffel built it.")
    assert compute_score("nq", response, GOLD)["retrieval_hit"] == 1.0
    assert compute_score("nq", response, GOLD, {"retrieved_passages": None})["retrieval_hit"] == 1.0
    assert compute_score("nq", response, GOLD, {"retrieved_passages": []})["retrieval_hit"] == 0.0
    # The loop's reply to a malformed action may quote the policy; it is not retrieval.
    echo = "<think>a</think><search></search>\n\n<information>Empty query. You wrote: Gustave Eiffel</information>"
    assert compute_score("nq", echo, GOLD)["retrieval_hit"] == 0.0


def test_protocol_comes_from_extra_info():
    response = tool_call_response("Eiffel")
    assert compute_score("nq", response, GOLD, {"protocol": "tool_call"})["format_ok"] == 1.0
    assert compute_score("nq", response, GOLD, {})["format_ok"] == 0.0  # tags by default
    assert compute_score("nq", response, GOLD, None)["format_ok"] == 0.0
    with pytest.raises(ValueError, match=r"extra_info\.protocol must be one of"):
        compute_score("nq", response, GOLD, {"protocol": "hermes"})


def test_several_golds_unicode_and_numbers():
    assert compute_score("popqa", tags_response("kraków"), {"target": ["Cracow", "Kraków"]})["em"] == 1.0
    assert compute_score("popqa", tags_response("Krakow"), {"target": ["Kraków"]})["em"] == 0.0
    assert compute_score("nq", tags_response("1,889"), np.array(["1889"]))["em"] == 1.0
    assert compute_score("nq", tags_response("in 1889"), ["1889"])["subem"] == 1.0


# Response text built from the pieces that matter: tags of both protocols (closed, unclosed, stray),
# role residue, answers that are right, wrong, blank or article-only.
PIECES = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<search>",
        "</search>",
        "<information>",
        "</information>",
        "<answer>",
        "</answer>",
        "<tool_call>",
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
        "\nuser\n",
        "\nassistant\n",
        "\n",
        " ",
        "Gustave Eiffel",
        "the Eiffel!",
        "Verne",
        "the",
        '{"name": "search", "arguments": {"query_list": ["q"]}}',
        '{"name": "search"',
    ]
)
TAG_SOUP = st.lists(PIECES | st.text(max_size=5), max_size=30).map("".join)
EXTRA_INFO = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"protocol": st.sampled_from(["tags", "tool_call"])},
        optional={
            "num_searches": st.one_of(st.integers(-2, 5), st.floats(), st.text(max_size=2), st.none()),
            "num_queries": st.one_of(st.integers(0, 9), st.just(np.int32(4))),
            "retrieved_passages": st.one_of(
                st.none(),
                st.lists(TAG_SOUP, max_size=3),
                st.lists(TAG_SOUP, max_size=3).map(lambda p: np.array(p, dtype=object)),
                st.lists(st.one_of(st.integers(), st.none(), st.text(max_size=8)), max_size=3),
                st.text(max_size=20),
            ),
        },
    ),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(), TAG_SOUP), extra_info=EXTRA_INFO)
def test_never_raises_and_always_returns_the_same_keys_and_types(text: str, extra_info):
    scores = compute_score("nq", text, GOLD, extra_info)
    check_shape(scores)
    assert scores["score"] in (0.0, 0.1, 0.2, 0.8, 1.0)
    assert scores["em"] <= scores["f1"] and scores["em"] <= scores["subem"]
    if scores["format_ok"]:
        assert scores["has_answer"] == 1.0


@pytest.mark.parametrize(
    "response",
    [
        "<think>a</think>" + " " * 200_000 + "x<answer>Eiffel</answer>",  # a long gap, then junk
        "<think>a</think>" + "\nuser \n" * 30_000 + "?<answer>Eiffel</answer>",
        "<answer>" * 30_000 + "Eiffel</answer>" + "</answer>" * 10,
        "<think>" * 30_000 + "<answer>Eiffel</answer>",
        "<think>a</think><search>" + "q\n" * 50_000 + "</search><answer>Eiffel</answer>",
    ],
)
@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
def test_adversarial_responses_are_scored_in_linear_time(response: str, protocol: str):
    """Degenerate generations (runs of white space, tag spam) must not stall a reward worker: each
    of these took seconds to minutes with a backtracking pattern; all are malformed."""
    passages = ["e " * 20_000, "Eiffel\n" + "eiffel " * 5_000]
    scores = compute_score(
        "nq", response, ["e", "Gustave Eiffel"], {"protocol": protocol, "retrieved_passages": passages}
    )
    check_shape(scores)
    assert scores["format_ok"] == 0.0
    assert scores["retrieval_hit"] == 1.0


def test_non_string_responses_do_not_raise():
    check_shape(compute_score("nq", None, GOLD))  # type: ignore[arg-type]
    check_shape(compute_score("nq", b"<answer>x</answer>", GOLD))  # type: ignore[arg-type]


# --- Differential test against verl's own search_r1_like_qa_em --------------------------------
# Where the definitions coincide (no observation tags in the text, at most 10 answer tags, gold
# answers that do not normalise to nothing), EM, sub-EM and the extracted answer are identical.

ANSWER_WORD_LIST = [
    "Eiffel",
    "eiffel",
    "EIFFEL",
    "Eiffel's",
    "the ",
    "The ",
    "a ",
    "an",
    "!",
    ".",
    " ",
    "\n",
    "1,889",
    "1889",
    "Kraków",
]
ANSWER_WORDS = st.sampled_from(ANSWER_WORD_LIST)
ANSWER_TEXT = st.lists(ANSWER_WORDS, max_size=3).map("".join)
SOUP = st.lists(
    st.one_of(
        ANSWER_TEXT,
        st.sampled_from(
            ["<answer>", "</answer>", "<think>", "</think>", "<search>", "</search>", "\nuser\n"]
        ),
        st.text(max_size=4),
    ),
    max_size=6,
).map("".join)
# Mostly well-delimited answer blocks between bits of soup, so that answers, matches and misses abound.
VERL_TEXT = (
    st.tuples(SOUP, st.lists(st.tuples(ANSWER_TEXT, SOUP), max_size=3))
    .map(lambda parts: parts[0] + "".join(f"<answer>{answer}</answer>{rest}" for answer, rest in parts[1]))
    .filter(
        lambda t: (
            "<information>" not in t
            and "<tool_response>" not in t
            and t.count("<answer>") <= 10
            and t.count("</answer>") <= 10
        )
    )
)
GOLDS = st.lists(ANSWER_TEXT.filter(lambda g: verl_qa.normalize_answer(g) != ""), min_size=1, max_size=3)


def verl_score(method, text: str, golds: list[str]) -> float:
    with contextlib.redirect_stdout(io.StringIO()):  # verl prints one sample in 64
        return method(text, {"target": golds})


def assert_same_as_verl(text: str, golds: list[str], protocol: str) -> None:
    ours = compute_score("nq", text, {"target": golds}, {"protocol": protocol}, shaping=False)
    assert extract_answer(text, protocol) == verl_qa.extract_solution(text)
    assert ours["em"] == ours["score"] == verl_score(verl_qa.compute_score, text, golds)
    assert ours["subem"] == verl_score(verl_qa.compute_score_subem, text, golds)


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(text=VERL_TEXT, golds=GOLDS, protocol=st.sampled_from(["tags", "tool_call"]))
def test_em_and_subem_identical_to_verl_where_the_definitions_coincide(
    text: str, golds: list[str], protocol: str
):
    assert_same_as_verl(text, golds, protocol)


def test_em_and_subem_identical_to_verl_on_20000_random_responses():
    """Volume next to hypothesis' search: seeded random responses in the same vocabulary."""
    rng = random.Random(0)
    tags = ["<answer>", "</answer>", "<think>", "</think>", "<search>", "</search>", "\nuser\n", "x", "?"]

    def answer() -> str:
        return "".join(rng.choice(ANSWER_WORD_LIST) for _ in range(rng.randint(0, 3)))

    def soup() -> str:
        return "".join(rng.choice(tags) if rng.random() < 0.4 else answer() for _ in range(rng.randint(0, 4)))

    matches = 0
    for _ in range(20_000):
        text = soup() + "".join(f"<answer>{answer()}</answer>{soup()}" for _ in range(rng.randint(0, 3)))
        golds = [g for g in (answer() for _ in range(rng.randint(1, 3))) if verl_qa.normalize_answer(g)] or [
            "Eiffel"
        ]
        if text.count("<answer>") > 10 or text.count("</answer>") > 10:
            continue
        assert_same_as_verl(text, golds, rng.choice(["tags", "tool_call"]))
        matches += compute_score("nq", text, golds)["em"] == 1.0
    assert matches > 500  # the generator does produce correct answers, not only misses


# The deliberate differences, each pinned down (docs/reward.md, "Differences from verl").


def test_difference_answer_inside_an_observation_is_not_the_answer():
    text = "<think>a</think><search>q</search>\n\n<information>Q: who? <answer>Gustave Eiffel</answer></information>"
    assert verl_score(verl_qa.compute_score, text, ["Gustave Eiffel"]) == 1.0
    assert compute_score("nq", text, GOLD)["em"] == 0.0


def test_difference_golds_normalising_to_nothing_match_nothing():
    text = "<answer>The</answer>"
    assert verl_score(verl_qa.compute_score, text, ["a"]) == 1.0
    assert verl_score(verl_qa.compute_score_subem, "<answer>anything</answer>", ["the"]) == 1.0
    assert compute_score("nq", text, ["a"])["em"] == 0.0
    assert compute_score("nq", "<answer>anything</answer>", ["the"])["subem"] == 0.0


def test_difference_answer_spam_is_a_format_error_not_a_quarter_score():
    text = "<think>a</think>" + "<answer>x</answer>" * 5 + "<answer>Gustave Eiffel</answer>" * 6
    assert verl_score(verl_qa.compute_score, text, ["Gustave Eiffel"]) == 0.25
    scores = compute_score("nq", text, GOLD)
    assert (scores["em"], scores["format_ok"], scores["score"]) == (1.0, 0.0, CORRECT_MALFORMED)
