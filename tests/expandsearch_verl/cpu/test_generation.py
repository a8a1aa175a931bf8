"""The HF rollout's generation against transformers' own: greedy ids, log-probs, stops, eos, limits."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from expandsearch_verl.cpu.generation import Sampling, SamplingError, end_token_ids, generate, score


@pytest.fixture(scope="module")
def tiny(chat_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    model = AutoModelForCausalLM.from_pretrained(chat_model_dir, dtype=torch.float32).eval()
    prompt = tokenizer.encode("Who wrote the novel? <think>", add_special_tokens=False)
    return tokenizer, model, prompt


def run(tiny, end_ids=frozenset(), seed=0, **params):
    tokenizer, model, prompt = tiny
    sampling = Sampling.from_params({"max_tokens": 12, **params}, room=100)
    return generate(model, tokenizer, prompt, sampling, set(end_ids), torch.Generator().manual_seed(seed))


def test_greedy_is_transformers_greedy_and_log_probs_are_the_actors(tiny):
    _, model, prompt = tiny
    out = run(tiny, temperature=0, logprobs=True)
    expected = model.generate(
        torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
    )[0, len(prompt) :].tolist()
    assert out.token_ids == expected and out.stop_reason == "length"
    # What verl's actor computes for the same tokens: log_softmax of one forward pass.
    logits = model(torch.tensor([prompt + expected])).logits[0, len(prompt) - 1 : -1]
    actor = torch.log_softmax(logits, -1).gather(1, torch.tensor(expected)[:, None])[:, 0]
    assert out.log_probs == pytest.approx(actor.tolist(), abs=1e-4)
    assert score(model, prompt, expected, 0.0) == pytest.approx(actor.tolist(), abs=1e-4)


def test_sampling_is_seeded_and_top_k_1_is_greedy(tiny):
    assert run(tiny, seed=3).token_ids == run(tiny, seed=3).token_ids
    assert run(tiny, top_k=1, seed=5).token_ids == run(tiny, temperature=0).token_ids
    draws = {tuple(run(tiny, seed=seed, temperature=2.0).token_ids) for seed in range(4)}
    assert len(draws) > 1


def test_temperature_scales_the_reported_log_probs(tiny):
    _, model, prompt = tiny
    out = run(tiny, temperature=0.7, logprobs=True, seed=1)
    assert score(model, prompt, out.token_ids, 0.7) == pytest.approx(out.log_probs, abs=1e-4)


def test_stops_right_after_the_token_that_completes_a_stop_string(tiny):
    tokenizer = tiny[0]
    free = run(tiny, temperature=0).token_ids
    text = tokenizer.decode(free[:4], skip_special_tokens=False)
    stop = text[-3:] if len(text) >= 3 else text
    out = run(tiny, temperature=0, stop=[stop])
    assert out.stop_reason == "completed"
    assert stop in tokenizer.decode(out.token_ids, skip_special_tokens=False)
    assert stop not in tokenizer.decode(out.token_ids[:-1], skip_special_tokens=False)
    assert out.token_ids == free[: len(out.token_ids)]


def test_stops_on_an_end_id_and_keeps_it(tiny):
    free = run(tiny, temperature=0).token_ids
    out = run(tiny, end_ids={free[2]}, temperature=0)
    assert out.token_ids == free[: free.index(free[2]) + 1] and out.stop_reason == "completed"


def test_max_tokens_is_capped_by_the_room_left(tiny):
    tokenizer, model, prompt = tiny
    sampling = Sampling.from_params({"max_tokens": 50}, room=5)
    assert sampling.max_tokens == 5
    assert len(generate(model, tokenizer, prompt, sampling, set(), torch.Generator()).token_ids) == 5


def test_end_ids_come_from_the_generation_config(tmp_path, chat_model_dir, tiny):
    """SmolLM2's converted tokenizer says <|im_start|>; its generation config <|im_end|> (id 2)."""
    tokenizer, model, _ = tiny
    assert end_token_ids(str(tmp_path), model, tokenizer) == {model.config.eos_token_id}
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    assert end_token_ids(str(tmp_path), model, tokenizer) == {2, 7}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": [""]}, "stop"),
        ({"repetition_penalty": 1.2}, "repetition_penalty"),
        ({"n": 2}, "unsupported"),
    ],
)
def test_bad_sampling_params_are_named(params, named):
    with pytest.raises(SamplingError, match=named):
        Sampling.from_params(params, room=10)
