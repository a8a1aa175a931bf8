"""`BatchedGenerator` with the tiny random chat model: batching, per-row stops, sampling, log-probs, weights.

The model is random, so what it writes means nothing; what is checked is that each row is exactly
what it would be alone, that each row ends where its own params say, and that seeded sampling,
log-probs and new weights behave as an engine's do.
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from retriever_server.generation import (
    BatchedGenerator,
    ContextTooLong,
    Generation,
    GenerationError,
    SamplingParams,
)
from retriever_server.models import load_causal_lm


@pytest.fixture(scope="module")
def tiny(chat_model_dir):
    return load_causal_lm(str(chat_model_dir), device="cpu")


def prompt(tokenizer, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )


def alone(generator: BatchedGenerator, ids: list[int], params: SamplingParams) -> Generation:
    return generator.generate_batch([ids], [params])[0]


async def test_concurrent_calls_share_one_batch_and_each_row_is_what_it_is_alone(tiny):
    model, tokenizer = tiny
    batches: list[int] = []
    generator = BatchedGenerator(model, tokenizer, batch_size=8, max_wait_ms=500, on_batch=batches.append)
    requests = [
        (prompt(tokenizer, "a"), SamplingParams(max_tokens=12)),
        (prompt(tokenizer, "a much longer question than the others"), SamplingParams(max_tokens=7)),
        (prompt(tokenizer, "who?"), SamplingParams(max_tokens=12, temperature=1.0, seed=3)),
        (
            prompt(tokenizer, "sampled"),
            SamplingParams(max_tokens=9, temperature=0.8, top_k=20, top_p=0.9, seed=5),
        ),
    ]
    together = await asyncio.gather(*(generator.generate(ids, params) for ids, params in requests))
    await generator.aclose()
    assert batches == [len(requests)]
    assert together == [alone(generator, ids, params) for ids, params in requests]
    assert [len(g.token_ids) for g in together] == [12, 7, 12, 9]
    assert {g.finish_reason for g in together} == {"length"}


def test_each_row_stops_at_its_own_stop_string_or_budget(tiny):
    model, tokenizer = tiny
    generator = BatchedGenerator(model, tokenizer)
    ids = prompt(tokenizer, "tell me")
    sampled = SamplingParams(max_tokens=12, temperature=1.0, seed=11)
    free = alone(generator, ids, sampled).token_ids
    assert len(set(free[:4])) == 4, "the sampled tokens repeat: pick another seed"
    # a stop string spanning the 2nd and 3rd tokens: the row ends after the 3rd, the token completing it
    stop = tokenizer.decode(free[1:3])
    assert stop not in tokenizer.decode(free[:2]), "the 3rd token adds no text"
    rows = generator.generate_batch(
        [ids, ids, ids],
        [
            SamplingParams(max_tokens=12, temperature=1.0, seed=11, stop=("never seen", stop)),
            SamplingParams(max_tokens=2, temperature=1.0, seed=11),
            sampled,
        ],
    )
    assert rows[0] == Generation(free[:3], "stop", stop)
    assert rows[1] == Generation(free[:2], "length")
    assert rows[2].token_ids == free


def test_the_end_token_is_the_generation_configs_not_the_tokenizers(chat_model_dir):
    model, tokenizer = load_causal_lm(str(chat_model_dir), device="cpu")
    ids, params = prompt(tokenizer, "tell me"), SamplingParams(max_tokens=12, temperature=1.0, seed=11)
    free = alone(BatchedGenerator(model, tokenizer), ids, params).token_ids
    end = next(token for k, token in enumerate(free) if k >= 2 and token not in free[:k])
    model.generation_config.eos_token_id = [end]  # the tokenizer still names <|im_end|>
    generator = BatchedGenerator(model, tokenizer)
    assert generator.eos_token_ids == (end,) and tokenizer.eos_token_id != end
    ended = alone(generator, ids, params)
    assert ended == Generation(free[: free.index(end) + 1], "stop", end)  # EOS included, as vLLM returns it


def test_seeded_sampling_is_reproducible_and_seeds_differ(tiny):
    model, tokenizer = tiny
    generator = BatchedGenerator(model, tokenizer)
    ids = prompt(tokenizer, "q")
    seeded = [SamplingParams(max_tokens=10, temperature=1.0, seed=seed) for seed in (1, 1, 2)]
    first, again, other = generator.generate_batch([ids] * 3, seeded)
    assert first == again == alone(generator, ids, seeded[0])
    assert first.token_ids != other.token_ids
    greedy = alone(generator, ids, SamplingParams(max_tokens=10))
    assert greedy.token_ids != first.token_ids


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_log_probs_are_the_models_for_the_chosen_tokens(tiny, temperature):
    model, tokenizer = tiny
    generator = BatchedGenerator(model, tokenizer)
    ids = prompt(tokenizer, "x")
    params = SamplingParams(max_tokens=6, temperature=temperature, top_k=50, seed=4, logprobs=True)
    out = alone(generator, ids, params)
    with torch.inference_mode():
        logits = model(torch.tensor([ids + out.token_ids])).logits[0, len(ids) - 1 : -1]
    expected = torch.log_softmax(logits / (temperature or 1.0), dim=-1)
    expected = expected[torch.arange(len(out.token_ids)), out.token_ids].tolist()
    assert out.log_probs == pytest.approx(expected, abs=1e-4)
    assert generator.score_tokens(ids, out.token_ids, temperature) == pytest.approx(out.log_probs, abs=1e-4)
    assert alone(generator, ids, SamplingParams(max_tokens=6)).log_probs is None


async def test_new_weights_change_the_output_and_the_old_ones_restore_it(chat_model_dir):
    model, tokenizer = load_causal_lm(str(chat_model_dir), device="cpu")
    generator = BatchedGenerator(model, tokenizer)
    ids, params = prompt(tokenizer, "tell me"), SamplingParams(max_tokens=8)
    before = await generator.generate(ids, params)
    scored = await generator.score(ids, before.token_ids)
    original = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    seeded = torch.Generator().manual_seed(0)
    new = [(name, torch.randn(t.shape, generator=seeded)) for name, t in original.items()]
    during = asyncio.gather(*(generator.generate(ids, params) for _ in range(3)))
    await generator.load_state_dict(iter(new))  # verl hands the weights over as (name, tensor) pairs
    after = await generator.generate(ids, params)
    together = await during
    assert together in ([before] * 3, [after] * 3)  # one thread: a batch sees the old or the new weights
    assert after.token_ids != before.token_ids
    assert await generator.score(ids, before.token_ids) != pytest.approx(scored)  # the new weights score too
    await generator.load_state_dict(original)
    assert await generator.generate(ids, params) == before
    assert await generator.score(ids, before.token_ids) == scored
    with pytest.raises(GenerationError, match="tensors the model does not have"):
        await generator.load_state_dict({"no.such.weight": torch.zeros(1)})
    await generator.aclose()


def test_a_row_whose_caller_left_stops_at_once(tiny):
    model, tokenizer = tiny
    generator = BatchedGenerator(model, tokenizer)
    ids = prompt(tokenizer, "long")
    left, stayed = generator.generate_batch(
        [ids, ids], [SamplingParams(max_tokens=50)] * 2, [lambda: True, lambda: False]
    )
    assert left.finish_reason == "abort" and len(left.token_ids) == 1
    assert stayed.finish_reason == "length" and len(stayed.token_ids) == 50


async def test_bad_requests_are_refused_naming_the_field(tiny):
    model, tokenizer = tiny
    generator = BatchedGenerator(model, tokenizer)
    with pytest.raises(ContextTooLong, match="8190 prompt tokens \\+ max_tokens 10 exceed the model's 8192"):
        await generator.generate([1] * 8190, SamplingParams(max_tokens=10))
    with pytest.raises(GenerationError, match="prompt_ids must not be empty"):
        await generator.generate([], SamplingParams(max_tokens=10))
    with pytest.raises(GenerationError, match="max_tokens is required"):
        SamplingParams.from_request({"temperature": 1.0})
    with pytest.raises(GenerationError) as error:
        SamplingParams.from_request(
            {"max_tokens": 0, "temperature": -1, "top_p": 0, "top_k": -2, "stop": [""]}
        )
    assert all(field in str(error.value) for field in ("max_tokens", "temperature", "top_p", "top_k", "stop"))
    assert SamplingParams.from_request(
        {"max_tokens": 4, "stop": "</search>", "logprobs": 1}
    ) == SamplingParams(max_tokens=4, stop=("</search>",), logprobs=True)
    await generator.aclose()
