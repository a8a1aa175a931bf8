"""`extractive` backend with the real MiniLM encoder, run in the engine thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from retriever_server.squeezer import SqueezeError
from retriever_server.squeezer.extractive import ExtractiveSqueezer, split_sentences

STOKER = (
    "Bram Stoker was an Irish author and theatre manager. He managed the Lyceum Theatre in London for "
    "27 years. Stoker wrote the Gothic novel Dracula, published in 1897."
)
PARIS = "Paris is the capital of France. The Eiffel Tower was completed in 1889 for the World's Fair."


def test_split_sentences():
    assert split_sentences('He said "Go." Then he left! Was it 1897? "Yes." (It was.) e.g. fine') == [
        'He said "Go."',
        "Then he left!",
        "Was it 1897?",
        '"Yes."',
        "(It was.) e.g. fine",
    ]
    assert split_sentences("  ") == [] and split_sentences("no end") == ["no end"]


@pytest.fixture
def engine():
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retriever-engine")
    yield executor
    executor.shutdown()


async def test_takes_the_sentences_about_the_queries(minilm_encoder, engine, make_passage):
    threads = set()
    encode = minilm_encoder.encode

    def recording_encode(texts, is_query):
        threads.add(threading.current_thread().name)
        return encode(texts, is_query)

    squeezer = ExtractiveSqueezer(minilm_encoder, engine, max_tokens=60)
    minilm_encoder.encode = recording_encode
    try:
        docs = [
            make_passage(1, "Paris", PARIS),
            make_passage(2, "Bram Stoker", STOKER),
            make_passage(3, "Stoker again", "Stoker wrote the Gothic novel Dracula, published in 1897."),
        ]
        summary = await squeezer.squeeze(["who wrote dracula", "author of the novel dracula"], docs, None)
    finally:
        minilm_encoder.encode = encode
    assert threads == {"retriever-engine_0"}  # the encoder is only ever used in the engine thread
    assert "Bram Stoker: " in summary and "wrote the Gothic novel Dracula" in summary
    assert "Eiffel" not in summary and "capital of France" not in summary  # off-topic sentences stay out
    assert summary.count("wrote the Gothic novel Dracula") == 1  # the near-copy in passage 3 is skipped
    assert sum(squeezer.count_tokens(summary.split("\n"))) <= 60 + 10  # budget (plus the title labels)


async def test_the_budget_and_the_question_count(minilm_encoder, engine, make_passage):
    docs = [make_passage(1, "Bram Stoker", STOKER)]
    tight = ExtractiveSqueezer(minilm_encoder, engine, max_tokens=20)
    summary = await tight.squeeze(["dracula"], docs, "Who wrote Dracula?")
    assert sum(tight.count_tokens([s for s in split_sentences(summary.split(": ", 1)[1])])) <= 20
    with pytest.raises(SqueezeError, match="no sentence fits"):
        await ExtractiveSqueezer(minilm_encoder, engine, max_tokens=3).squeeze(["dracula"], docs, None)
    with pytest.raises(SqueezeError, match="no text"):
        await tight.squeeze(["dracula"], [make_passage(2, "Empty", " ")], None)


async def test_sentences_are_encoded_once_per_passage(minilm_encoder, engine, make_passage):
    encoded = []
    encode = minilm_encoder.encode

    def recording_encode(texts, is_query):
        encoded.append((len(texts), is_query))
        return encode(texts, is_query)

    squeezer = ExtractiveSqueezer(minilm_encoder, engine, max_tokens=60, cache_passages=2)
    docs = [make_passage(1, "Bram Stoker", STOKER), make_passage(2, "Paris", PARIS)]
    minilm_encoder.encode = recording_encode
    try:
        first = await squeezer.squeeze(["who wrote dracula"], docs, None)
        second = await squeezer.squeeze(["who wrote dracula"], docs[::-1], None)
        await squeezer.squeeze(["eiffel tower"], [make_passage(3, "Rome", "Rome is in Italy.")], None)
    finally:
        minilm_encoder.encode = encode
    assert encoded == [(1, True), (5, False), (1, True), (0, False), (1, True), (1, False)]
    assert first == second  # the same sentences (only Stoker's are about the query), from vectors kept
    assert len(squeezer._seen) == 2  # capped: the oldest passage was dropped
