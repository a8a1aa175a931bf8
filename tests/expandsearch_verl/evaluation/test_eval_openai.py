"""`expandsearch eval` against a policy server that speaks vLLM's OpenAI completions protocol.

The loop, the retriever client, the reward and the files are the real ones; the policy is the
scripted server on loopback (no vLLM here), the retriever the real `serve --demo` or the
fault-injecting double. Every trajectory's output is checked against the agent-loop invariants.
"""

from __future__ import annotations

import json
import logging

import pytest
from record_checks import read_records

from expandsearch_verl.rescore import score_dumps
from expandsearch_verl.source_table import PAPER_ORDER

RESPONSE_LENGTH = 1024
LENGTHS = ("--prompt-length", 1024, "--response-length", RESPONSE_LENGTH)


@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
def test_eval_end_to_end(
    protocol, tmp_path, eval_data, policy_server, demo_retriever_url, eval_cli, checked_loops, check_records
):
    output = tmp_path / "eval"
    status, out, err = eval_cli(
        eval_data(protocol),
        "--policy-url", policy_server.url,
        "--retriever-url", demo_retriever_url,
        "--output-dir", output,
        "--set", "squeeze=false", "--set", "max_observation_tokens=256",
        *LENGTHS, "--concurrency", 5, "--plot",
    )  # fmt: skip
    assert status == 0, err
    records = check_records(output, 14, RESPONSE_LENGTH)
    assert len(checked_loops) == 14 and policy_server.app.completions == 28  # search, then answer
    assert all(record["protocol"] == protocol and record["format_ok"] == 1.0 for record in records)
    assert all(record["searches"] == 1 and record["search_failures"] == 0 for record in records)
    opening = "<information>" if protocol == "tags" else "<tool_response>"
    assert all(opening in record["trajectory"][1]["text"] for record in records)
    # the rule policy answers with the first title it reads; the demo corpus has the evidence
    assert sum(record["em"] for record in records) > 0 and sum(r["retrieval_hit"] for r in records) >= 10

    assert (output / "em_per_dataset.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((output / "summary.json").read_text())
    assert list(summary["table"]["sources"]) == list(PAPER_ORDER)
    assert summary["n"] == 14 and summary["searches_per_trajectory"] == 1.0
    assert summary["em_macro_average"] == pytest.approx(sum(summary["em_per_source"].values()) / 7)
    for source in PAPER_ORDER:
        assert f"\n{source} " in out
    assert "paper layout" in out and "Bamboogle" in out and "Avg." in out

    # `expandsearch score` on the file reproduces every score the evaluation wrote
    rescored, skipped = score_dumps([str(output / "trajectories.jsonl")], {})
    assert skipped == 0
    for record, (_, scores) in zip(records, rescored, strict=True):
        assert {key: record[key] for key in scores} == scores


def test_rerun_resumes_and_skips_finished_ids(
    tmp_path, eval_data, policy_server, fake_retriever, eval_cli, check_records
):
    output = tmp_path / "eval"
    common = (
        "--policy-url",
        policy_server.url,
        "--retriever-url",
        fake_retriever.url,
        "--output-dir",
        output,
    )
    assert eval_cli(eval_data(), *common, *LENGTHS, "--data-sources", "nq,popqa")[0] == 0
    assert policy_server.app.completions == 8
    status, out, _ = eval_cli(eval_data(), *common, *LENGTHS)  # now every data source
    assert status == 0 and policy_server.app.completions == 8 + 2 * 10
    records = check_records(output, 14, RESPONSE_LENGTH)
    assert sorted(r["data_source"] for r in records[:4]) == ["nq", "nq", "popqa", "popqa"]
    status, out, _ = eval_cli(eval_data(), *common, *LENGTHS)  # nothing left: the summary again
    assert status == 0 and policy_server.app.completions == 28 and "macro average (7)" in out


def test_policy_dies_mid_run_then_a_rerun_resumes(
    tmp_path, eval_data, policy_process, policy_server, fake_retriever, eval_cli, check_records
):
    output = tmp_path / "eval"
    dying = policy_process("--die-after", "11")
    common = ("--retriever-url", fake_retriever.url, "--output-dir", output, *LENGTHS, "--concurrency", 3)
    status, _, err = eval_cli(
        eval_data(), "--policy-url", dying, *common, "--policy-retries", 1, "--policy-timeout-s", 5
    )
    assert status == 1
    assert "the policy server" in err and "failed 2 time(s)" in err and "rerun the same command" in err
    finished = read_records(output)  # only whole trajectories were written
    assert 1 <= len(finished) <= 5
    text = (output / "trajectories.jsonl").read_text()
    assert text.endswith("\n") and not (output / "summary.json").exists()

    status, _, err = eval_cli(eval_data(), "--policy-url", policy_server.url, *common)
    assert status == 0, err
    records = check_records(output, 14, RESPONSE_LENGTH)
    assert records[: len(finished)] == finished
    assert policy_server.app.completions == 2 * (14 - len(finished))  # nothing finished was redone


def test_half_written_last_line_is_dropped(
    tmp_path, eval_data, policy_server, fake_retriever, eval_cli, caplog
):
    output = tmp_path / "eval"
    common = (
        "--policy-url",
        policy_server.url,
        "--retriever-url",
        fake_retriever.url,
        "--output-dir",
        output,
    )
    assert eval_cli(eval_data(), *common, *LENGTHS, "--data-sources", "nq")[0] == 0
    path = output / "trajectories.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # a crash in the middle of a write
    with caplog.at_level(logging.WARNING):
        assert eval_cli(eval_data(), *common, *LENGTHS, "--data-sources", "nq")[0] == 0
    assert "dropping a half-written last line" in caplog.text
    records = read_records(output)
    assert records[0] == json.loads(lines[0])  # kept as it was; the cut one was evaluated again
    assert [record["id"] for record in records] == [json.loads(line)["id"] for line in lines]


def test_retriever_outage_trajectories_complete_and_failures_are_counted(
    tmp_path, eval_data, policy_server, fake_retriever, eval_cli, check_records
):
    fake_retriever.mode = "500"
    output = tmp_path / "eval"
    status, out, err = eval_cli(
        eval_data(),
        "--policy-url", policy_server.url,
        "--retriever-url", fake_retriever.url,
        "--output-dir", output,
        "--set", "max_retries=1", "--set", "backoff_s=0.01", "--set", "backoff_max_s=0.02",
        *LENGTHS,
    )  # fmt: skip
    assert status == 0, err
    records = check_records(output, 14, RESPONSE_LENGTH)
    for record in records:
        assert record["search_failures"] == record["num_searches"] == 1
        assert record["retrieved_ids"] == [] and record["answer"] == "unknown"
        assert "The search failed: " in record["trajectory"][1]["text"]
    summary = json.loads((output / "summary.json").read_text())
    assert summary["search_failures"] == 14 and summary["search_failure_rate"] == 1.0
    assert summary["trajectories_with_search_failures"] == 14
    assert "search failures 14 (100.0%)" in out


def test_text_only_server_is_reencoded_with_a_warning(
    tmp_path, eval_data, policy_process, policy_server, fake_retriever, eval_cli, checked_loops, caplog
):
    common = ("--retriever-url", fake_retriever.url, *LENGTHS, "--data-sources", "nq,hotpotqa")
    with caplog.at_level(logging.WARNING):
        status, _, err = eval_cli(
            eval_data(),
            "--policy-url",
            policy_process("--text-only"),
            "--output-dir",
            tmp_path / "text",
            *common,
        )
    assert status == 0, err
    assert "returns text without token ids: re-encoding it locally" in caplog.text
    assert (
        eval_cli(eval_data(), "--policy-url", policy_server.url, "--output-dir", tmp_path / "ids", *common)[0]
        == 0
    )
    by_text, by_ids = read_records(tmp_path / "text"), read_records(tmp_path / "ids")
    key = lambda record: (record["data_source"], record["id"])  # noqa: E731
    for text, ids in zip(sorted(by_text, key=key), sorted(by_ids, key=key), strict=True):
        assert text["trajectory"] == ids["trajectory"] and text["em"] == ids["em"]
