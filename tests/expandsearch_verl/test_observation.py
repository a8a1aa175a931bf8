"""Observations: notes, then a summary or whole documents, within the token budget, ids included."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
from tokenizers import Regex, pre_tokenizers

from expandsearch_verl.observation import TAGS_CLOSE, TAGS_OPEN, format_document, format_observation, tags_ids

# The pre-tokenizer of Qwen2 / Qwen2.5 (tokenizer.json), for the exactness check.
QWEN_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


@dataclass
class Doc:
    title: str
    text: str


DOCS = [
    Doc("Eiffel Tower", "The Eiffel Tower in Paris was built from 1887 to 1889 by Gustave Eiffel's company."),
    Doc("Paris", "Paris is the capital and largest city of France"),
    Doc("Seine", "The Seine flows through Paris into the English Channel at Le Havre."),
    Doc("Lyon", "Lyon is the third largest city of France."),
] + [Doc(f"Extra {n}", f"Filler passage number {n}, about nothing in particular.") for n in range(12)]


@pytest.fixture(scope="module")
def qwen_style(chat_tokenizer):
    """The test tokenizer with Qwen's pre-tokenizer."""
    tokenizer = copy.deepcopy(chat_tokenizer)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return tokenizer


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_documents_are_numbered_best_first(chat_tokenizer):
    observation = format_observation([], chat_tokenizer, 10_000, documents=DOCS[:2])
    assert observation.text == (
        "Doc 1 (Title: Eiffel Tower)\n" + DOCS[0].text + "\n\nDoc 2 (Title: Paris)\n" + DOCS[1].text + "\n\n"
    )
    assert chat_tokenizer.decode(observation.token_ids) == observation.text


@pytest.mark.parametrize("budget", [1, 5, 20, 37, 60, 90, 120, 200, 400, 2000])
@pytest.mark.parametrize("notes", [[], ["Only the first 3 queries were searched."]])
def test_budget_bounds_the_ids_and_documents_stay_whole(chat_tokenizer, budget: int, notes: list[str]):
    observation = format_observation(notes, chat_tokenizer, budget, documents=DOCS)
    assert len(observation.token_ids) <= budget
    assert chat_tokenizer.decode(observation.token_ids) == observation.text
    blocks = [block for block in observation.text.split("\n\n") if block]
    shown = [block for block in blocks if block.startswith("Doc ")]
    if shown != blocks[len(blocks) - len(shown) :] or (
        shown and not shown[-1].endswith(DOCS[len(shown) - 1].text)
    ):
        assert not notes and len(shown) == 1  # only a lone first document may be cut
    else:  # the documents are a complete prefix of the ranking, and the next one would not have fitted
        assert shown == [format_document(rank, doc) for rank, doc in enumerate(DOCS[: len(shown)], start=1)]
        if len(shown) < len(DOCS) and (notes or shown):
            longer = format_observation(notes, chat_tokenizer, 10_000, documents=DOCS[: len(shown) + 1])
            assert len(longer.token_ids) > budget


def test_ids_are_the_ids_of_the_joined_text_for_qwen_style_tokenizers(qwen_style):
    for budget in [12, 17, 23, 30, 41, 80, 200, 1000]:
        for notes in [[], ["A note.", "Another note"]]:
            observation = format_observation(notes, qwen_style, budget, documents=DOCS)
            assert observation.token_ids == encode(qwen_style, observation.text)
            wrapped = tags_ids(observation, qwen_style)
            assert wrapped == encode(qwen_style, TAGS_OPEN + observation.text + TAGS_CLOSE)
    summary = format_observation(["Note."], qwen_style, 1000, summary="It was built in 1889.")
    assert summary.token_ids == encode(qwen_style, summary.text)


def test_notes_come_first(chat_tokenizer):
    observation = format_observation(["Note A.", "Note B."], chat_tokenizer, 10_000, documents=DOCS[:1])
    assert observation.text.startswith("Note A. Note B.\n\nDoc 1 (Title: Eiffel Tower)")


def test_a_first_document_larger_than_the_budget_is_cut_rather_than_dropped(chat_tokenizer):
    observation = format_observation([], chat_tokenizer, 12, documents=DOCS)
    assert observation.text and len(observation.token_ids) <= 12
    assert format_document(1, DOCS[0]).startswith(observation.text.rstrip())


def test_summary_replaces_documents_and_is_cut_to_the_budget(chat_tokenizer):
    summary = "The tower was built from 1887 to 1889. " * 20
    full = format_observation(["Note."], chat_tokenizer, 10_000, summary=summary, documents=DOCS)
    assert full.text == "Note.\n\n" + summary.strip() + "\n\n" and "Doc 1" not in full.text
    cut = format_observation([], chat_tokenizer, 30, summary=summary, documents=DOCS)
    assert len(cut.token_ids) <= 30 and cut.text.endswith("\n\n") and summary.startswith(cut.text.rstrip())


def test_no_documents_and_no_budget(chat_tokenizer):
    assert format_observation([], chat_tokenizer, 100).text == "The search found no documents.\n\n"
    assert format_observation(["The search failed: timeout."], chat_tokenizer, 100).text == (
        "The search failed: timeout.\n\n"
    )
    empty = format_observation(["x"], chat_tokenizer, 0, documents=DOCS)
    assert empty.text == "" and empty.token_ids == []


def test_unicode_cuts_leave_no_broken_characters(chat_tokenizer):
    docs = [Doc("Zürich", "Zürich 🌉 — ünïcödé text " * 30)]
    for budget in range(1, 40):
        observation = format_observation([], chat_tokenizer, budget, documents=docs)
        assert "\ufffd" not in observation.text and len(observation.token_ids) <= budget


def test_document_ids_are_cached(chat_tokenizer, monkeypatch):
    format_observation([], chat_tokenizer, 10_000, documents=DOCS)  # warm
    calls = []
    original = type(chat_tokenizer).__call__
    monkeypatch.setattr(
        type(chat_tokenizer), "__call__", lambda self, *a, **k: calls.append(a) or original(self, *a, **k)
    )
    again = format_observation([], chat_tokenizer, 10_000, documents=DOCS)
    assert calls == [] and chat_tokenizer.decode(again.token_ids) == again.text


def test_tags_wrapper(chat_tokenizer):
    observation = format_observation(["x."], chat_tokenizer, 100)
    assert (
        chat_tokenizer.decode(tags_ids(observation, chat_tokenizer))
        == "\n\n<information>\nx.\n\n</information>\n\n"
    )
