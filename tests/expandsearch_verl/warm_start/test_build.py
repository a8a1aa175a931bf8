"""The warm start's SFT set: train rows only, built by the real agent loop with the teacher as the policy.

The loop runs over the fake retriever (`/search` on loopback) and the tiny chat model's tokenizer;
each example is then taken apart again: the prompt is the chat template's, the trained spans are the
teacher's turns, the masked spans are the loop's observations, and the answer is whole.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from data_prep.flashrag import SAMPLES_DIR
from expandsearch_verl.agent_loop_config import shipped_path
from expandsearch_verl.evaluation.loop_builder import LoopBuilder
from expandsearch_verl.warm_start.build import build_examples, train_rows, write_examples


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return train_rows(tmp_path_factory.mktemp("warm_data"))


def loop_builder(tokenizer, model_dir, url: str, response_length: int) -> LoopBuilder:
    settings = {
        "retriever_urls": [url],
        "topk": 3,
        "max_turns": 3,
        "max_observation_tokens": 96,
        "squeeze": False,
    }
    return LoopBuilder(shipped_path(), tokenizer=tokenizer, model_path=str(model_dir), prompt_length=1024,
                       response_length=response_length, settings=settings)  # fmt: skip


def spans(ids: list[int], mask: list[int], start: int) -> list[tuple[int, list[int]]]:
    """The response's runs of equal mask: (mask, ids)."""
    runs: list[tuple[int, list[int]]] = []
    for token, bit in zip(ids[start:], mask[start:], strict=True):
        if runs and runs[-1][0] == bit:
            runs[-1][1].append(token)
        else:
            runs.append((bit, [token]))
    return runs


def test_only_train_questions_are_read(rows):
    assert len(rows) == 90 and {row.run_kwargs["extra_info"]["split"] for row in rows} == {"train"}
    held_out = {
        json.loads(line)["question"]
        for split in ("dev", "test")
        for path in SAMPLES_DIR.glob(f"*/{split}.jsonl")
        for line in path.read_text().splitlines()
    }
    assert held_out and not held_out & {row.question for row in rows}


async def test_examples_are_the_loops_ids_with_observations_masked(
    rows, chat_tokenizer, chat_model_dir, fake_retriever, tmp_path
):
    chosen = [row for row in rows if row.data_source == "nq"][:2] + [
        row for row in rows if row.data_source == "hotpotqa"
    ][:2]
    builder = loop_builder(chat_tokenizer, chat_model_dir, fake_retriever.url, 512)
    examples, report = await build_examples(chosen, builder)
    assert (report.rows, report.examples, report.dropped) == (4, 8, 0)
    assert [example["searches"] for example in examples] == [1, 1, 1, 1, 2, 2, 2, 2]  # multi-hop: two
    for row, example in zip([row for row in chosen for _ in (0, 1)], examples, strict=True):
        ids, mask, start = example["input_ids"], example["loss_mask"], example["prompt_length"]
        prompt = chat_tokenizer.apply_chat_template(
            row.run_kwargs["raw_prompt"], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        assert ids[:start] == prompt and not any(mask[:start])
        runs = spans(ids, mask, start)
        assert [bit for bit, _ in runs] == [1, 0] * example["searches"] + [
            1
        ]  # turn, observation, ..., answer
        for bit, run in runs:
            text = chat_tokenizer.decode(run)
            if bit:
                assert run == chat_tokenizer.encode(text, add_special_tokens=False)  # the turn, encoded alone
                assert text.startswith("<think>") and text.endswith(("</search>", "</answer>"))
            else:
                assert text.startswith("\n\n<information>\n") and text.endswith("</information>\n\n")
        gold = row.golden_answers[0]
        assert (
            chat_tokenizer.decode(runs[-1][1])
            == f"<think>The answer is {gold}.</think>\n<answer> {gold} </answer>"
        )
        assert len(fake_retriever.requests) >= 1
    write_examples(examples, tmp_path / "warm_start.parquet")
    table = pq.read_table(tmp_path / "warm_start.parquet")
    assert table.num_rows == 8 and table.column("input_ids").to_pylist()[0] == examples[0]["input_ids"]


async def test_an_answer_the_budget_would_cut_is_never_kept(
    rows, chat_tokenizer, chat_model_dir, fake_retriever
):
    chosen = [row for row in rows if row.data_source in ("nq", "hotpotqa")][:40]
    builder = loop_builder(chat_tokenizer, chat_model_dir, fake_retriever.url, 160)
    kept, report = await build_examples(chosen, builder)
    assert report.dropped > 0 and report.dropped + report.examples == 2 * len(chosen)
    assert kept and all(example["response"].endswith("</answer>") for example in kept)
    assert report.searches == {1: len(kept)}  # two searches never fit: multi-hop rows fell back to one
