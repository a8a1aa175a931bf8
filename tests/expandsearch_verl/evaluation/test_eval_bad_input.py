"""`expandsearch eval` refuses bad input before the first trajectory, with a message that says the fix."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

LENGTHS = ("--prompt-length", 1024, "--response-length", 1024)


@pytest.fixture
def common(tmp_path, policy_server, fake_retriever):
    return (
        "--policy-url",
        policy_server.url,
        "--retriever-url",
        fake_retriever.url,
        "--output-dir",
        tmp_path / "out",
    )


def write_rows(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


GOOD_ROW = {
    "data_source": "nq",
    "agent_name": "expandsearch_agent",
    "prompt": [{"role": "user", "content": "Question: who wrote dracula"}],
    "reward_model": {"style": "rule", "ground_truth": {"target": ["Bram Stoker"]}},
    "extra_info": {"index": 0, "id": "q0"},
}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"data_source": "nq", "question": "q"}], "missing column(s) ['prompt', 'reward_model']"),
        ([{**GOOD_ROW, "prompt": []}], "row 0: prompt must be a non-empty list of"),
        ([{**GOOD_ROW, "data_source": ""}], "row 0: data_source must be a non-empty string"),
        (
            [{**GOOD_ROW, "reward_model": {"style": "rule", "ground_truth": {"target": [" "]}}}],
            "row 0: reward_model.ground_truth has no non-blank answer",
        ),
        ([GOOD_ROW, GOOD_ROW], "1 (data_source, extra_info.id) pair(s) occur more than once, e.g. ['nq/q0']"),
    ],
)
def test_bad_parquet(tmp_path, common, eval_cli, rows, message):
    status, _, err = eval_cli(write_rows(tmp_path / "bad.parquet", rows), *common)
    assert status == 2 and message in err
    assert not (tmp_path / "out").exists()  # nothing was written


def test_missing_and_unreadable_files(tmp_path, common, eval_cli):
    status, _, err = eval_cli(tmp_path / "nope.parquet", *common)
    assert status == 2 and "nope.parquet: no such file" in err and "python -m data_prep" in err
    (tmp_path / "text.parquet").write_text("not parquet")
    status, _, err = eval_cli(tmp_path / "text.parquet", *common)
    assert status == 2 and "not a readable parquet file" in err


def test_search_r1_rows_without_ids_or_questions_are_evaluated(tmp_path, common, eval_cli):
    """Search-R1's parquet: extra_info has only split and index; the user message holds the question."""
    rows = [
        {**GOOD_ROW, "extra_info": {"split": "test", "index": index}, "agent_name": None}
        for index in range(3)
    ]
    status, out, err = eval_cli(write_rows(tmp_path / "sr1.parquet", rows), *common, *LENGTHS)
    assert status == 0, err
    assert "nq" in out and "macro average (1)" in out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--data-sources", "nq,webq"), "--data-sources: ['webq'] not in"),
        (("--max-per-dataset", 0), "--max-per-dataset: 0 must be >= 1"),
        (("--set", "topk=0"), "topk=0: Input should be greater than 0"),
        (("--set", "toppk=3"), "unknown key 'toppk'"),
        (("--concurrency", 0), "--concurrency: 0 must be >= 1"),
        (("--top-p", 0), "--top-p: 0.0 must be in (0, 1]"),
        (("--reward-kwargs", "shaping=maybe"), "reward_kwargs.shaping must be true or false"),
        (("--response-length", 0), "--response-length: 0 must be >= 1"),
    ],
)
def test_bad_options(eval_data, common, eval_cli, arguments, message):
    status, _, err = eval_cli(eval_data(), *common, *arguments)
    assert status == 2 and message in err


def test_bad_agent_loop_yaml_and_verl_override(tmp_path, eval_data, common, eval_cli):
    yaml = tmp_path / "loops.yaml"
    yaml.write_text("- name: x\n  _target_: verl.experimental.agent_loop.ToolAgentLoop\n")
    status, _, err = eval_cli(eval_data(), *common, "--agent-loop-config", yaml)
    assert (
        status == 2
        and "expandsearch eval runs expandsearch_verl.agent_loop.ExpandSearchAgentLoop entries" in err
    )
    yaml.write_text(
        "- name: expandsearch_agent\n  _target_: expandsearch_verl.agent_loop.ExpandSearchAgentLoop\n  topk: -1\n"
    )
    status, _, err = eval_cli(eval_data(), *common, "--agent-loop-config", yaml)
    assert status == 2 and "topk=-1: Input should be greater than 0" in err
    status, _, err = eval_cli(eval_data(), *common, "--verl-override", "data.no_such_key=1")
    assert status == 2 and "--verl-override" in err


def test_unreachable_policy_and_retriever(eval_data, tmp_path, policy_server, dead_url, eval_cli):
    status, _, err = eval_cli(
        eval_data(), "--policy-url", dead_url, "--output-dir", tmp_path, "--policy-retries", 0
    )
    assert status == 2 and f"the policy server {dead_url} failed 1 time(s) on /v1/models" in err
    assert "cannot be reached (ConnectError)" in err
    status, _, err = eval_cli(
        eval_data(), "--policy-url", policy_server.url, "--retriever-url", dead_url, "--output-dir", tmp_path
    )
    assert status == 2 and "no retriever of agent loop 'expandsearch_agent' can be reached" in err
    status, _, err = eval_cli(eval_data(), "--policy-url", "localhost:8000", "--output-dir", tmp_path)
    assert status == 2 and "must start with http:// or https://" in err


def test_context_longer_than_the_servers_is_refused(eval_data, common, eval_cli):
    status, _, err = eval_cli(eval_data(), *common, "--prompt-length", 30000, "--response-length", 3000)
    assert status == 2 and "exceeds the policy's context of 32768 tokens" in err


def test_a_tokenizer_that_is_not_the_servers_is_refused(eval_data, common, eval_cli, minilm_path):
    status, _, err = eval_cli(eval_data(), *common, "--tokenizer", minilm_path)
    assert status == 2 and "the server tokenizes differently from the local tokenizer" in err
    assert "give --tokenizer the checkpoint the server serves (scripted-policy)" in err
