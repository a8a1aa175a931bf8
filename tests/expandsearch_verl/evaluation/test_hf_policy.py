"""`HFPolicy`: a local model behind `LLMServerClient.generate`, batched across concurrent calls.

Greedy decoding of the tiny random chat model is deterministic, so what a batched, left-padded call
returns can be compared with the same request alone, and stop strings can be placed on tokens the
model is known to emit.
"""

from __future__ import annotations

import asyncio

import pytest

from expandsearch_verl.evaluation.hf_policy import HFPolicy
from expandsearch_verl.evaluation.policy import PolicyError

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "logprobs": False}


@pytest.fixture
async def policy(chat_model_dir):
    policy = HFPolicy.load(str(chat_model_dir), device="cpu", batch_size=8)
    yield policy
    await policy.aclose()


def _prompt(tokenizer, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )


async def _generate(policy, prompt_ids, **sampling):
    return await policy.generate("r", prompt_ids=prompt_ids, sampling_params={**GREEDY, **sampling})


async def test_batched_calls_match_single_calls(policy):
    prompts = [_prompt(policy.tokenizer, text) for text in ("a", "a much longer question here", "who?")]
    alone = [await _generate(policy, ids, max_tokens=12) for ids in prompts]
    together = await asyncio.gather(*(_generate(policy, ids, max_tokens=12) for ids in prompts))
    assert [out.token_ids for out in together] == [out.token_ids for out in alone]
    assert all(0 < len(out.token_ids) <= 12 for out in alone)


async def test_each_row_stops_at_its_own_budget_and_stop_string(policy):
    ids = _prompt(policy.tokenizer, "tell me")
    free = (await _generate(policy, ids, max_tokens=10)).token_ids
    assert len(free) >= 4, "the tiny model ended too early for this test"
    # the text of the first three tokens as a stop string (spanning tokens): the row ends after the 3rd
    stop, at = policy.tokenizer.decode(free[:3]), 2
    assert len(stop) > len(policy.tokenizer.decode(free[:2])), "the 3rd token adds no text"
    stopped, short = await asyncio.gather(
        _generate(policy, ids, max_tokens=10, stop=[stop]), _generate(policy, ids, max_tokens=at)
    )
    assert stopped.token_ids == free[: at + 1]
    assert short.token_ids == free[:at]


async def test_log_probs_when_asked(policy):
    ids = _prompt(policy.tokenizer, "x")
    out = await _generate(policy, ids, max_tokens=5, logprobs=True)
    assert len(out.log_probs) == len(out.token_ids) and all(p <= 0 for p in out.log_probs)


async def test_a_request_over_the_context_is_refused(policy):
    with pytest.raises(PolicyError, match="max_tokens 10 exceed the model's"):
        await _generate(policy, [1] * policy.max_model_len, max_tokens=10)


def test_eval_with_the_local_policy(
    tmp_path, chat_model_dir, eval_data, fake_retriever, eval_cli, checked_loops, check_records
):
    output = tmp_path / "eval"
    status, out, err = eval_cli(
        eval_data(n=1),
        "--policy-model", chat_model_dir,
        "--retriever-url", fake_retriever.url,
        "--output-dir", output,
        "--prompt-length", 512, "--response-length", 64, "--device", "cpu",
    )  # fmt: skip
    assert status == 0, err
    records = check_records(output, 7, 64)
    assert len(checked_loops) == 7
    assert all(record["trajectory"][0]["text"] == record["response"][: len(record["trajectory"][0]["text"])]
               for record in records)  # fmt: skip
    assert "Avg." in out
