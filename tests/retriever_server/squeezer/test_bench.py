"""The squeezer benchmark runs end to end and prints its three tables (tiny sizes)."""

from __future__ import annotations

import pytest

from retriever_server.squeezer import bench


@pytest.mark.slow
def test_bench_prints_every_table(capsys):
    assert (
        bench.main(
            [
                "--turns",
                "3",
                "--openai-requests",
                "20",
                "--hf-requests",
                "2",
                "--hf-context-tokens",
                "120",
                "--hf-max-new-tokens",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| raw concatenation" in out and "| in-process batch 2 |" in out
    assert "| client | requests | p50 ms |" in out and "| official |" in out and "| hand-written |" in out
    assert "served / ceiling" in out


def test_variants_are_the_question_its_keywords_and_a_narrow_form():
    assert bench.variants("Who wrote the novel Dracula in 1897?") == [
        "Who wrote the novel Dracula in 1897?",
        "wrote novel Dracula 1897",
        "wrote novel Dracula 1897",
    ]
    assert (
        bench.variants("Which river flows through the capital city of Hungary?")[2]
        == "through capital city Hungary"
    )
