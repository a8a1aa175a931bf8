"""The bench's side-by-side table sends fresh requests, and says so when a measurement outruns them."""

from __future__ import annotations

import asyncio
from collections import Counter

from retriever_server.bench.loadgen import drive
from retriever_server.bench.retriever import distinct_bodies


def test_bodies_ask_about_distinct_towns_until_the_corpus_runs_out():
    bodies = distinct_bodies(120, 100, seed=1)
    assert len({body["queries"][0] for body in bodies}) == 100
    towns = Counter(body["queries"][0] for body in distinct_bodies(120, 300, seed=1))
    assert len(towns) == 120 and set(towns.values()) <= {2, 3}  # every town once per pass


def test_drive_counts_bodies_it_had_to_send_twice(server_url):
    bodies = distinct_bodies(120, 5, seed=2)
    once = asyncio.run(drive(server_url, bodies, 2, None))
    assert once["requests"] == 5 and once["bodies_repeated"] == 0
    # a timed window lasts at least three round trips of each client after both had an answer
    cycled = asyncio.run(drive(server_url, bodies, 2, 0.05))
    assert cycled["bodies_repeated"] > 0
