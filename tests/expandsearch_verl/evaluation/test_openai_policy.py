"""`OpenAIPolicy`: the request it sends, what it does with each kind of answer, and its retries.

The server side is httpx's `MockTransport` (the real client code runs; only the socket is
replaced), so each answer can be scripted exactly; the end-to-end runs are in test_eval_openai.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from expandsearch_verl.evaluation.openai_policy import OpenAIPolicy, _open_action
from expandsearch_verl.evaluation.policy import PolicyError

PARAMS = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": False}


def policy_with(answers, tokenizer=None, **kwargs):
    """A policy whose server answers with `answers` in turn (httpx.Response or exception); records requests."""
    requests: list[httpx.Request] = []
    answers = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = OpenAIPolicy("http://policy:8001/v1", model="m", tokenizer=tokenizer, backoff_s=0.001, **kwargs)
    policy._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return policy, requests


def completion(**choice) -> httpx.Response:
    return httpx.Response(200, json={"object": "text_completion", "choices": [{"index": 0, **choice}]})


async def generate(policy, **params):
    return await policy.generate(
        "r1",
        prompt_ids=[1, 2, 3],
        sampling_params={**PARAMS, "stop": ["</search>"], "max_tokens": 7, **params},
    )


async def test_request_maps_the_loop_sampling_params_and_returns_the_token_ids():
    policy, requests = policy_with(
        [completion(text="a</search>", token_ids=[5, 6], finish_reason="stop")], seed=3
    )
    output = await generate(policy)
    assert output.token_ids == [5, 6] and output.log_probs is None and output.stop_reason == "completed"
    assert requests[0].url == "http://policy:8001/v1/completions"
    assert json.loads(requests[0].content) == {
        "model": "m",
        "prompt": [1, 2, 3],
        "max_tokens": 7,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": ["</search>"],
        "include_stop_str_in_output": True,
        "return_token_ids": True,
        "skip_special_tokens": False,
        "seed": 3,
    }
    policy, requests = policy_with([completion(text="", token_ids=[5], finish_reason="length")])
    await generate(policy, top_k=20, repetition_penalty=1.1, temperature=0.7)
    body = json.loads(requests[0].content)
    assert body["top_k"] == 20 and body["repetition_penalty"] == 1.1 and body["temperature"] == 0.7


# Qwen2.5-Instruct's generation_config.json, and the fields vLLM fills from it when a request leaves
# them out (vllm/entrypoints/openai/protocol.py `_DEFAULT_SAMPLING_PARAMS`; `--generation-config auto`,
# vLLM's default, reads them from the checkpoint).
QWEN_GENERATION_CONFIG = {"repetition_penalty": 1.05, "temperature": 0.7, "top_p": 0.8, "top_k": 20}
VLLM_DEFAULTED = {"repetition_penalty": 1.0, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}


async def test_vllm_cannot_fill_any_sampling_param_from_the_checkpoint():
    """What vLLM decodes with is what verl's validation decodes with (greedy, no repetition penalty,
    every token), whatever the checkpoint's generation_config says."""
    policy, requests = policy_with([completion(text="", token_ids=[5], finish_reason="length")])
    await generate(policy)
    body = json.loads(requests[0].content)
    effective = {
        key: body[key] if body.get(key) is not None else QWEN_GENERATION_CONFIG.get(key, default)
        for key, default in VLLM_DEFAULTED.items()
    }
    assert effective == {
        "repetition_penalty": 1.0,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
        "min_p": 0.0,
    }


async def test_log_probs_when_the_loop_asks_for_them():
    logprobs = {"tokens": ["a", "b"], "token_logprobs": [-0.5, -0.25]}
    policy, requests = policy_with([completion(text="ab", token_ids=[5, 6], logprobs=logprobs)])
    output = await generate(policy, logprobs=True)
    assert output.log_probs == [-0.5, -0.25] and json.loads(requests[0].content)["logprobs"] == 1
    policy, _ = policy_with([completion(text="ab", token_ids=[5, 6], logprobs=None)])
    with pytest.raises(PolicyError, match="no log-prob per token for 2 tokens"):
        await generate(policy, logprobs=True)


async def test_transient_failures_are_retried_then_succeed():
    answers = [
        httpx.ConnectError("refused"),
        httpx.Response(503, json={"object": "error", "message": "overloaded"}),
        httpx.Response(429, json={"error": {"message": "slow down"}}),
        completion(text="x", token_ids=[9]),
    ]
    policy, requests = policy_with(answers, retries=3)
    assert (await generate(policy)).token_ids == [9] and len(requests) == 4


async def test_a_server_that_keeps_failing_raises_with_the_last_reason():
    policy, requests = policy_with([httpx.Response(500, json={"message": "boom"})] * 3, retries=2)
    with pytest.raises(PolicyError, match=r"failed 3 time\(s\) on /v1/completions: HTTP 500: boom"):
        await generate(policy)
    assert len(requests) == 3
    policy, _ = policy_with([httpx.ReadTimeout("slow")], retries=0, timeout_s=2)
    with pytest.raises(PolicyError, match="no answer within 2 s"):
        await generate(policy)


async def test_refusals_and_garbage_are_not_retried():
    too_long = {"object": "error", "message": "This model's maximum context length is 4096 tokens."}
    policy, requests = policy_with([httpx.Response(400, json=too_long)], retries=3)
    with pytest.raises(
        PolicyError, match=r"refused /v1/completions \(HTTP 400\): This model's maximum context"
    ):
        await generate(policy)
    assert len(requests) == 1
    policy, requests = policy_with([httpx.Response(200, text="<html>proxy</html>")], retries=3)
    with pytest.raises(PolicyError, match="a body that is not JSON"):
        await generate(policy)
    policy, _ = policy_with([httpx.Response(200, json={"choices": []})])
    with pytest.raises(PolicyError, match="no choices"):
        await generate(policy)


async def test_text_only_answers_are_reencoded_with_the_stop_string_put_back(chat_tokenizer, caplog):
    search = "<think>x</think>\n<search>\nq1\nq2\n"
    answers = [
        completion(text=search + "</search>", finish_reason="stop"),  # the stop string kept
        completion(text=search, finish_reason="stop", stop_reason="</search>"),  # vLLM without include_stop
        completion(text=search, finish_reason="stop", matched_stop="</search>"),  # SGLang
        completion(text=search, finish_reason="stop"),  # nothing says which: the open action's
        completion(text="<think>long", finish_reason="length"),  # cut by max_tokens: nothing to add
    ]
    policy, _ = policy_with(answers, tokenizer=chat_tokenizer)
    expected = chat_tokenizer.encode(search + "</search>", add_special_tokens=False)
    for _ in range(4):
        assert (await generate(policy)).token_ids == expected
    assert (await generate(policy)).token_ids == chat_tokenizer.encode(
        "<think>long", add_special_tokens=False
    )
    assert caplog.text.count("returns text without token ids") == 1  # warned once


def test_open_action_picks_the_last_opened_tag():
    stops = ["</search>", "</answer>"]
    assert _open_action("<search>\nq", stops) == "</search>"
    assert _open_action("<search>a</search><answer> x ", stops) == "</answer>"
    assert _open_action("no tags at all", stops) is None


async def test_served_model_and_tokenizer_check(chat_tokenizer):
    cards = {"object": "list", "data": [{"id": "a"}, {"id": "b", "root": "/ckpt", "max_model_len": 8192}]}
    policy, _ = policy_with([httpx.Response(200, json=cards)])
    policy.model = None
    with pytest.raises(PolicyError, match=r"serves \['a', 'b'\]: choose one with --policy-model-name"):
        await policy.served_model()
    policy, _ = policy_with([httpx.Response(200, json=cards)])
    policy.model = "b"
    served = await policy.served_model()
    assert (served.id, served.root, served.max_model_len) == ("b", "/ckpt", 8192)
    policy, _ = policy_with([httpx.Response(404, json={"detail": "Not Found"})], tokenizer=chat_tokenizer)
    assert await policy.check_tokenizer() is False  # a server without /tokenize: not checked
