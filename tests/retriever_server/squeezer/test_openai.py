"""`openai` backend against a real HTTP server that speaks chat completions (tests/.../conftest.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from retriever_server.metrics import ServerMetrics
from retriever_server.squeezer import SqueezeError
from retriever_server.squeezer.llm import LLMSqueezer
from retriever_server.squeezer.openai import OpenAIChat, api_key_from_env
from retriever_server.squeezer.prompt import PromptTemplate

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Search queries:\n- who\n- what"},
]


def chat(url: str, **kwargs) -> OpenAIChat:
    options = {"timeout_s": 1.0, "retries": 2, **kwargs}
    return OpenAIChat(url, "llama-test", **options)


async def test_success_sends_the_real_protocol(chat_server):
    url, server = chat_server
    client = chat(url, api_key="sk-test", max_tokens=77)
    assert await client.complete(MESSAGES) == "Summary for: who | what"
    await client.aclose()
    (body,) = server.requests
    assert body == {
        "model": "llama-test",
        "messages": MESSAGES,
        "max_tokens": 77,
        "temperature": 0.0,
        "stream": False,
    }


async def test_api_key_goes_in_the_bearer_header(chat_server, monkeypatch):
    url, _ = chat_server
    monkeypatch.setenv("SQUEEZER_TEST_KEY", "sk-123")
    client = chat(url, api_key=api_key_from_env("SQUEEZER_TEST_KEY"))
    assert client.client.auth_headers == {"Authorization": "Bearer sk-123"}
    await client.aclose()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-another-server")
    client = chat(url)
    assert client.client.auth_headers == {"Authorization": "Bearer EMPTY"}  # never $OPENAI_API_KEY
    await client.aclose()
    monkeypatch.delenv("SQUEEZER_TEST_KEY")
    with pytest.raises(ValueError, match="SQUEEZER_TEST_KEY is not set"):
        api_key_from_env("SQUEEZER_TEST_KEY")
    assert api_key_from_env(None) is None


@pytest.mark.parametrize("failure", ["429", "500", "slow"])
async def test_transient_failures_are_retried(chat_server, failure):
    url, server = chat_server
    server.script.extend([failure, failure])
    metrics = ServerMetrics()
    client = chat(url, metrics=metrics)
    assert await client.complete(MESSAGES) == "Summary for: who | what"
    await client.aclose()
    assert len(server.requests) == 3
    cause = "timeout" if failure == "slow" else failure
    assert metrics.registry.get_sample_value("retriever_squeezer_retries_total", {"cause": cause}) == 2


async def test_gives_up_after_the_retries(chat_server):
    url, server = chat_server
    server.script.extend(["500"] * 5)
    client = chat(url, retries=2)
    with pytest.raises(SqueezeError, match=r"HTTP 500.*gave up after 3 attempts"):
        await client.complete(MESSAGES)
    await client.aclose()
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("action", "message"), [("400", "HTTP 400"), ("malformed", "malformed chat-completions")]
)
async def test_client_errors_and_malformed_answers_are_not_retried(chat_server, action, message):
    url, server = chat_server
    server.script.append(action)
    client = chat(url)
    with pytest.raises(SqueezeError, match=message):
        await client.complete(MESSAGES)
    await client.aclose()
    assert len(server.requests) == 1


async def test_a_refused_connection_is_retried_then_reported(free_port):
    client = chat(f"http://127.0.0.1:{free_port}/v1", retries=1)
    with pytest.raises(SqueezeError, match=r"connection failed.*gave up after 2 attempts"):
        await client.complete(MESSAGES)
    await client.aclose()


async def test_concurrency_is_capped(chat_server):
    url, server = chat_server
    server.slow_s = 0.2
    server.script.extend(["slow"] * 6)
    client = chat(url, concurrency=2, timeout_s=5)
    started = time.perf_counter()
    answers = await asyncio.gather(*(client.complete(MESSAGES) for _ in range(6)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    assert len(set(answers)) == 1 and elapsed >= 3 * 0.2  # 6 slow requests, 2 at a time: 3 rounds


async def test_empty_summary_is_a_failure(chat_server, make_passage):
    url, server = chat_server
    server.script.append("empty")
    squeezer = LLMSqueezer("openai", chat(url), PromptTemplate.load(), 4096)
    with pytest.raises(SqueezeError, match="empty summary"):
        await squeezer.squeeze(["q"], [make_passage(1)], None)
    await squeezer.aclose()


async def test_the_prompt_carries_queries_question_and_passages(chat_server, make_passage):
    url, server = chat_server
    squeezer = LLMSqueezer("openai", chat(url), PromptTemplate.load(), 4096)
    passages = [make_passage(1), make_passage(2), make_passage(1)]
    summary = await squeezer.squeeze(["who founded it", "founder"], passages, "Who founded Rome?")
    await squeezer.aclose()
    assert summary == "Summary for: who founded it | founder"
    system, user = server.requests[0]["messages"]
    assert system["role"] == "system" and "passages" in system["content"]
    assert "- who founded it\n- founder" in user["content"] and "Who founded Rome?" in user["content"]
    assert "[1] Title 1\nPassage 1" in user["content"] and "[2] Title 2" in user["content"]
    assert "[3]" not in user["content"]  # the duplicate passage is sent once


async def test_the_official_openai_client_accepts_the_test_server(chat_server):
    """The scripted server is a faithful stand-in: the real `openai` client parses its answers."""
    import openai

    url, server = chat_server
    client = openai.AsyncOpenAI(base_url=url, api_key="sk-test", max_retries=0)
    completion = await client.chat.completions.create(
        model="llama-test", messages=MESSAGES, max_tokens=8, temperature=0
    )
    assert completion.choices[0].message.content == "Summary for: who | what"
    assert completion.choices[0].finish_reason == "stop" and completion.usage.total_tokens > 0
    server.script.append("429")
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="llama-test", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="llama-test", messages=[{"role": "user"}])
    assert [model.id async for model in client.models.list()] == ["scripted-squeezer"]
    await client.close()
