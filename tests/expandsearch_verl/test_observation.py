"""Observation text: notes, then a summary or whole documents, within the token budget."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from expandsearch_verl.observation import format_document, format_observation, tags_observation


@dataclass
class Doc:
    title: str
    text: str


DOCS = [
    Doc("Eiffel Tower", "The Eiffel Tower in Paris was built from 1887 to 1889 by Gustave Eiffel's company."),
    Doc("Paris", "Paris is the capital and largest city of France."),
    Doc("Seine", "The Seine flows through Paris into the English Channel at Le Havre."),
    Doc("Lyon", "Lyon is the third largest city of France."),
]


def count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_documents_are_numbered_best_first(chat_tokenizer):
    text = format_observation([], chat_tokenizer, 10_000, documents=DOCS[:2])
    assert text == "Doc 1 (Title: Eiffel Tower)\n" + DOCS[0].text + "\n\nDoc 2 (Title: Paris)\n" + DOCS[1].text


@pytest.mark.parametrize("budget", [1, 5, 20, 37, 60, 90, 120, 200, 400])
def test_budget_is_never_exceeded_and_documents_stay_whole(chat_tokenizer, budget: int):
    notes = ["Only the first 3 queries were searched."]
    text = format_observation(notes, chat_tokenizer, budget, documents=DOCS)
    assert count(chat_tokenizer, text) <= budget
    shown = [format_document(rank, doc) for rank, doc in enumerate(DOCS, start=1) if format_document(rank, doc) in text]
    # the documents shown are a prefix of the ranking, each complete
    assert shown == [format_document(rank, doc) for rank, doc in enumerate(DOCS[: len(shown)], start=1)]
    if len(shown) < len(DOCS):  # the next document would not have fitted
        longer = "\n\n".join([notes[0], *[format_document(r, d) for r, d in enumerate(DOCS[: len(shown) + 1], 1)]])
        assert count(chat_tokenizer, longer) > budget


def test_notes_come_first(chat_tokenizer):
    text = format_observation(["Note A.", "Note B."], chat_tokenizer, 10_000, documents=DOCS[:1])
    assert text.startswith("Note A. Note B.\n\nDoc 1 (Title: Eiffel Tower)")


def test_a_first_document_larger_than_the_budget_is_cut_rather_than_dropped(chat_tokenizer):
    text = format_observation([], chat_tokenizer, 12, documents=DOCS)
    assert text and count(chat_tokenizer, text) <= 12
    assert format_document(1, DOCS[0]).startswith(text)


def test_summary_replaces_documents_and_is_cut_to_the_budget(chat_tokenizer):
    summary = "The tower was built from 1887 to 1889. " * 20
    full = format_observation(["Note."], chat_tokenizer, 10_000, summary=summary, documents=DOCS)
    assert full == "Note.\n\n" + summary.strip() and "Doc 1" not in full
    cut = format_observation([], chat_tokenizer, 30, summary=summary, documents=DOCS)
    assert count(chat_tokenizer, cut) <= 30 and summary.startswith(cut)


def test_no_documents_and_no_budget(chat_tokenizer):
    assert format_observation([], chat_tokenizer, 100) == "The search found no documents."
    assert format_observation(["The search failed: timeout."], chat_tokenizer, 100) == "The search failed: timeout."
    assert format_observation(["x"], chat_tokenizer, 0, documents=DOCS) == ""


def test_unicode_cuts_leave_no_broken_characters(chat_tokenizer):
    docs = [Doc("Zürich", "Zürich 🌉 — ünïcödé text " * 30)]
    for budget in range(1, 40):
        text = format_observation([], chat_tokenizer, budget, documents=docs)
        assert "\ufffd" not in text and count(chat_tokenizer, text) <= budget


def test_tags_wrapper():
    assert tags_observation("x") == "\n\n<information>x</information>\n\n"
