"""A failing retriever never fails a rollout: every trajectory completes, the failures are counted."""

from __future__ import annotations

import asyncio

import pytest

SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
SEARCH = "<think>look it up</think><search>Eiffel Tower\nParis landmark</search>"
ANSWER = "<answer> Paris </answer>"
FAST_RETRIES = {"max_retries": 1, "backoff_s": 0.01, "backoff_max_s": 0.02, "timeout_s": 0.3}


async def run_batch(make_loop, scripted, run_kwargs, count: int = 6, **settings):
    """`count` concurrent trajectories (as one AgentLoopWorker runs them), each searching twice."""
    generators = [scripted(SEARCH, SEARCH, ANSWER) for _ in range(count)]
    outputs = await asyncio.gather(
        *[
            make_loop(generator, **FAST_RETRIES, **settings).run(dict(SAMPLING), **run_kwargs())
            for generator in generators
        ]
    )
    return generators, outputs


def failure_notes(tokenizer, output) -> list[str]:
    text = tokenizer.decode(output.response_ids)
    return [part.split("</information>")[0].strip() for part in text.split("<information>")[1:]]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("down", "the retriever could not be reached"),
        ("slow", "the retriever did not answer within 0.3 s"),
        ("422", "the retriever refused the request"),
        ("500", "the retriever answered HTTP 500"),
        ("garbage", "the retriever's answer was not a valid /search response"),
    ],
)
async def test_every_trajectory_completes_and_counts_its_failures(
    fault, reason, make_loop, scripted, run_kwargs, chat_tokenizer, fake_retriever, dead_url
):
    settings = {"breaker_failures": 1000}  # exercise the retries here, not the breaker
    if fault == "down":
        settings["retriever_urls"] = [dead_url]
    elif fault == "slow":
        fake_retriever.delay_s = 1.0
    else:
        fake_retriever.mode = fault
    generators, outputs = await run_batch(make_loop, scripted, run_kwargs, **settings)
    for generator, output in zip(generators, outputs, strict=True):
        assert len(generator.calls) == 3  # the trajectory went on after each failure and answered
        assert output.extra_fields["search_failures"] == output.extra_fields["num_searches"] == 2
        assert output.extra_fields["retrieved_ids"] == [] and output.extra_fields["num_unique_docs"] == 0
        notes = failure_notes(chat_tokenizer, output)
        assert len(notes) == 2 and all(note.startswith("The search failed: " + reason) for note in notes)


async def test_one_dead_replica_of_two_costs_nothing(
    make_loop, scripted, run_kwargs, fake_retriever, dead_url
):
    _, outputs = await run_batch(
        make_loop, scripted, run_kwargs, count=8, retriever_urls=[dead_url, fake_retriever.url]
    )
    for output in outputs:
        assert output.extra_fields["search_failures"] == 0 and output.extra_fields["num_unique_docs"] > 0
    assert len(fake_retriever.requests) == 16


async def test_outage_then_recovery(make_loop, scripted, run_kwargs, fake_retriever):
    """Searches fail while the server errs and succeed again once it is back."""
    fake_retriever.mode = "500"
    settings = {"breaker_failures": 2, "breaker_cooldown_s": 0.05}
    _, during = await run_batch(make_loop, scripted, run_kwargs, count=4, **settings)
    assert all(output.extra_fields["search_failures"] == 2 for output in during)
    fake_retriever.mode = "ok"
    await asyncio.sleep(0.1)
    _, after = await run_batch(make_loop, scripted, run_kwargs, count=4, **settings)
    assert all(output.extra_fields["search_failures"] == 0 for output in after)
