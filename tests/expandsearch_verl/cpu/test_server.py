"""`HFRolloutServer` called directly (as Ray calls it) on the tiny model, and the scripted policy it serves."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from expandsearch_verl.cpu.scripted import score
from expandsearch_verl.cpu.server import HFRolloutServer
from retriever_server.generation import GenerationError

ROLLOUT = OmegaConf.create({"max_model_len": 400, "prompt_length": 256, "response_length": 144})
STOPS = ["</search>", "</answer>"]


def make_server(path, policy="hf"):
    return HFRolloutServer(str(path), None, ROLLOUT, policy=policy, batch_size=8)


def question_prompt(tokenizer, question="Which river flows through the city?"):
    messages = [
        {"role": "system", "content": "Search, then answer."},
        {"role": "user", "content": f"Question: {question}"},
    ]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )


async def generate(server, prompt_ids, **params):
    return await server.generate("r", prompt_ids, {"max_tokens": 16, "logprobs": True, **params})


async def test_serves_the_actors_weights_after_a_load(chat_model_dir):
    server = make_server(chat_model_dir)
    prompt = question_prompt(server.tokenizer)
    before = await generate(server, prompt, temperature=0)
    trained = AutoModelForCausalLM.from_pretrained(chat_model_dir)
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    named = list(trained.state_dict().items())
    assert await server.load_weights(named[:3], last=False, global_steps=4) == 0
    assert await server.load_weights(named[3:], last=True, global_steps=4) == 1
    after = await generate(server, prompt, temperature=0)
    assert after.extra_fields["global_steps"] == 4 and server.stats() == {
        "weight_loads": 1,
        "global_steps": 4,
    }
    # The served tokens and log-probs are the trained model's (what verl's actor computes for them).
    assert (
        after.token_ids
        == trained.generate(
            torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0
        )[0, len(prompt) :].tolist()[: len(after.token_ids)]
    )
    assert after.log_probs == pytest.approx(score(trained, prompt, after.token_ids, 0.0), abs=1e-4)
    assert after.log_probs != pytest.approx(before.log_probs, abs=1e-3)


@pytest.mark.parametrize("policy", ["hf", "scripted"])
async def test_refuses_weights_it_does_not_have(chat_model_dir, policy):
    server = make_server(chat_model_dir, policy)
    with pytest.raises(GenerationError, match="does not have"):
        await server.load_weights([("lm_head.bias", torch.zeros(3))], last=True, global_steps=1)
    assert server.stats()["weight_loads"] == 0


async def test_bad_requests_are_refused_with_the_reason(chat_model_dir):
    server = make_server(chat_model_dir)
    with pytest.raises(GenerationError, match="top_p"):
        await generate(server, [1, 2, 3], top_p=2.0)
    with pytest.raises(GenerationError, match="max_model_len=400"):
        await generate(server, [1] * 400)
    with pytest.raises(GenerationError, match="repetition_penalty"):
        await generate(server, [1, 2], repetition_penalty=1.3)
    with pytest.raises(GenerationError, match="text-only"):
        await server.generate("r", [1, 2], {}, image_data=["x"])


async def test_scripted_copies_search_then_answer_with_different_habits(chat_model_dir):
    server = make_server(chat_model_dir, policy="scripted")
    tokenizer = server.tokenizer
    prompt = question_prompt(tokenizer)
    texts = []
    for _copy in range(2):
        turn = await generate(server, prompt, stop=STOPS, max_tokens=100, temperature=1.0)
        text = tokenizer.decode(turn.token_ids)
        assert text.rstrip().endswith("</search>") and "Which river flows through the city?" in text
        # the served model's own log-probs for exactly these tokens
        assert turn.log_probs == pytest.approx(score(server.model, prompt, turn.token_ids, 1.0), abs=1e-5)
        observation = tokenizer.encode("\n<information>Doc 1 (Title: Paris) text</information>\n")
        answer = await generate(server, prompt + turn.token_ids + observation, stop=STOPS, max_tokens=100)
        texts.append(text + tokenizer.decode(answer.token_ids))
    careful, sloppy = texts
    assert "<think>" in careful and "<think>" not in sloppy
    assert all(text.rstrip().endswith("<answer> Paris </answer>") for text in texts)


async def test_scripted_turns_respect_max_tokens(chat_model_dir):
    server = make_server(chat_model_dir, policy="scripted")
    turn = await generate(server, question_prompt(server.tokenizer), stop=["</search>"], max_tokens=5)
    assert len(turn.token_ids) == 5
