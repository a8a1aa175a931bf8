"""`HFRolloutServer` (called directly, as Ray would) and the scripted policy it can serve."""

from __future__ import annotations

import asyncio

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from expandsearch_verl.cpu.generation import SamplingError
from expandsearch_verl.cpu.server import HFRolloutServer

ROLLOUT = OmegaConf.create({"max_model_len": 400, "prompt_length": 256, "response_length": 144})


def make_server(path, policy="hf"):
    return HFRolloutServer(str(path), None, ROLLOUT, policy=policy, seed=0)


def question_prompt(tokenizer, question="Which river flows through the city?"):
    messages = [
        {"role": "system", "content": "Search, then answer."},
        {"role": "user", "content": f"Question: {question}"},
    ]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )


def generate(server, prompt_ids, **params):
    return asyncio.run(server.generate("r", prompt_ids, {"max_tokens": 16, "logprobs": True, **params}))


def test_weights_from_the_actor_change_what_it_serves(chat_model_dir, tmp_path):
    server = make_server(chat_model_dir)
    prompt = question_prompt(server.tokenizer)
    before = generate(server, prompt, temperature=0)
    trained = AutoModelForCausalLM.from_pretrained(chat_model_dir)
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    named = list(trained.state_dict().items())
    assert server.load_weights(named[:3], last=False, global_steps=4) == 0
    assert server.load_weights(named[3:], last=True, global_steps=4) == 1
    after = generate(server, prompt, temperature=0)
    assert after.extra_fields["global_steps"] == 4 and server.stats() == {
        "weight_loads": 1,
        "global_steps": 4,
    }
    assert after.log_probs != pytest.approx(before.log_probs, abs=1e-3)
    reference = make_server(chat_model_dir)
    reference.model.load_state_dict(trained.state_dict())
    assert generate(reference, prompt, temperature=0).token_ids == after.token_ids


def test_refuses_weights_it_does_not_have(chat_model_dir):
    server = make_server(chat_model_dir)
    with pytest.raises(KeyError, match="does not have"):
        server.load_weights([("lm_head.bias", torch.zeros(3))], last=True, global_steps=1)


def test_bad_requests_are_refused_with_the_reason(chat_model_dir):
    server = make_server(chat_model_dir)
    with pytest.raises(SamplingError, match="top_p"):
        generate(server, [1, 2, 3], top_p=2.0)
    with pytest.raises(ValueError, match="max_model_len=400"):
        generate(server, [1] * 400)
    with pytest.raises(ValueError, match="text-only"):
        asyncio.run(server.generate("r", [1, 2], {}, image_data=["x"]))


def test_scripted_copies_of_a_prompt_search_then_answer_with_different_habits(chat_model_dir):
    server = make_server(chat_model_dir, policy="scripted")
    tokenizer = server.tokenizer
    prompt = question_prompt(tokenizer)
    stops = ["</search>", "</answer>"]
    texts = []
    for _copy in range(2):
        turn = generate(server, prompt, stop=stops, max_tokens=100)
        text = tokenizer.decode(turn.token_ids)
        assert text.rstrip().endswith("</search>") and "Which river flows through the city?" in text
        # log-probs are the served model's own, for exactly these tokens
        assert len(turn.log_probs) == len(turn.token_ids) and all(lp < 0 for lp in turn.log_probs)
        observation = tokenizer.encode("\n<information>Doc 1 (Title: Paris) text</information>\n")
        answer = generate(server, prompt + turn.token_ids + observation, stop=stops, max_tokens=100)
        texts.append(text + tokenizer.decode(answer.token_ids))
    careful, sloppy = texts
    assert "<think>" in careful and "<think>" not in sloppy
    assert careful.rstrip().endswith("<answer> Paris </answer>") and sloppy.rstrip().endswith(
        "<answer> Paris </answer>"
    )


def test_scripted_turns_respect_max_tokens(chat_model_dir):
    server = make_server(chat_model_dir, policy="scripted")
    turn = generate(server, question_prompt(server.tokenizer), stop=["</search>"], max_tokens=5)
    assert len(turn.token_ids) == 5
