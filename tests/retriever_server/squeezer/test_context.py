"""The squeezer's context: unique passages, best first, whole passages within a token budget."""

from __future__ import annotations

from retriever_server.index.corpus import Passage
from retriever_server.squeezer.context import (
    estimate_tokens,
    format_passage,
    format_passages,
    select_passages,
    tokenizer_counter,
    unique_passages,
)


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_unique_by_id_and_by_text(make_passage):
    a, b = make_passage(1), make_passage(2)
    same_text_other_id = Passage("9", a.contents, a.title, a.text)
    no_id = Passage("", b.contents, b.title, b.text)
    assert unique_passages([a, b, a, same_text_other_id, no_id]) == [a, b]


def test_whole_passages_up_to_the_budget(make_passage):
    passages = [make_passage(i, text=words(40)) for i in range(10)]
    sizes = estimate_tokens([format_passage(i + 1, p) for i, p in enumerate(passages)])
    budget = sum(sizes[:3]) + 2 * 3 + sizes[3] // 2  # room for three and a half
    kept = select_passages(passages, budget)
    assert kept == passages[:3]  # cut at a passage boundary, order kept
    assert select_passages(passages, 10**6) == passages


def test_a_first_passage_over_the_whole_budget_is_cut_at_a_word(make_passage):
    long = make_passage(1, text=words(2000))
    (kept,) = select_passages([long, make_passage(2)], 100)
    assert kept.id == "1" and long.text.startswith(kept.text) and 0 < len(kept.text) < len(long.text)
    assert estimate_tokens([format_passage(1, kept)])[0] <= 100
    assert kept.text.split()[-1] in long.text.split()  # no word cut in half


def test_real_tokenizer_counts(minilm_path, make_passage):
    from transformers import AutoTokenizer

    count = tokenizer_counter(AutoTokenizer.from_pretrained(minilm_path))
    assert count(["hello world", ""]) == [2, 0] and count([]) == []
    passages = [make_passage(i, text=words(50)) for i in range(5)]
    kept = select_passages(passages, 250, count)
    assert 1 <= len(kept) < 5 and sum(count([format_passage(i + 1, p) for i, p in enumerate(kept)])) <= 250


def test_format_numbers_the_blocks(make_passage):
    text = format_passages([make_passage(1), make_passage(2)])
    assert (
        text
        == "[1] Title 1\nPassage 1 says something about topic 1.\n\n[2] Title 2\nPassage 2 says something about topic 2."
    )
