"""`python -m data_prep` end to end: outputs, determinism, sampling, and every bad-input path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_prep.catalog import DATASETS
from data_prep.cli import main


def qa(ident, question, answers) -> dict:
    return {"id": ident, "question": question, "golden_answers": answers}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def rows_of(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_converts_train_and_test_with_the_default_datasets(flashrag_dir, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, stdout, _ = run(capsys, "--input-dir", flashrag_dir(), "--output-dir", out_dir)
    assert code == 0
    train, test = rows_of(out_dir / "train.parquet"), rows_of(out_dir / "test.parquet")
    assert sorted({r["data_source"] for r in train}) == ["hotpotqa", "nq"] and len(train) == 6
    assert {r["extra_info"]["split"] for r in train} == {"train"}
    by_source = {d: [r for r in test if r["data_source"] == d] for d in DATASETS}
    assert all(len(rows) == 3 for rows in by_source.values())
    assert {r["extra_info"]["split"] for r in by_source["hotpotqa"]} == {"dev"}  # no test split in FlashRAG
    assert {r["extra_info"]["split"] for r in by_source["popqa"]} == {"test"}
    assert [r["extra_info"]["index"] for r in test] == list(range(len(test)))  # unique per file
    assert {r["agent_name"] for r in train + test} == {"expandsearch_agent"}
    assert "nq" in stdout and "hotpotqa" in stdout and "wrote" in stdout


def test_same_inputs_and_seed_give_byte_identical_files(flashrag_dir, tmp_path, capsys):
    src = flashrag_dir(rows_per_split=20)
    outputs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        run(
            capsys, "--input-dir", src, "--output-dir", tmp_path / name, "--seed", seed, "--sample-ratio", 0.5
        )
        outputs.append({f: (tmp_path / name / f).read_bytes() for f in ("train.parquet", "test.parquet")})
    assert outputs[0] == outputs[1]
    assert outputs[0]["train.parquet"] != outputs[2]["train.parquet"]  # the seed shuffles train


def test_train_is_shuffled_across_datasets(flashrag_dir, tmp_path, capsys):
    run(
        capsys,
        "--input-dir",
        flashrag_dir(rows_per_split=30),
        "--output-dir",
        tmp_path,
        "--test-datasets",
        "",
    )
    sources = [r["data_source"] for r in rows_of(tmp_path / "train.parquet")]
    assert sorted(sources) == ["hotpotqa"] * 30 + ["nq"] * 30
    assert sources != sorted(sources) and sources != sorted(sources, reverse=True)
    assert not (tmp_path / "test.parquet").exists()


def test_test_sampling_per_dataset_is_stable(flashrag_dir, tmp_path, capsys):
    src = flashrag_dir(rows_per_split=10)
    run(
        capsys,
        "--input-dir",
        src,
        "--output-dir",
        tmp_path / "a",
        "--train-datasets",
        "",
        "--test-datasets",
        "nq,popqa",
        "--sample-ratio",
        0.3,
    )
    run(
        capsys,
        "--input-dir",
        src,
        "--output-dir",
        tmp_path / "b",
        "--train-datasets",
        "",
        "--test-datasets",
        "popqa",
        "--sample-ratio",
        0.3,
        "--max-per-dataset",
        2,
    )
    a, b = rows_of(tmp_path / "a" / "test.parquet"), rows_of(tmp_path / "b" / "test.parquet")
    assert [r["data_source"] for r in a] == ["nq"] * 3 + ["popqa"] * 3
    popqa_a = [r["extra_info"]["id"] for r in a if r["data_source"] == "popqa"]
    popqa_b = [r["extra_info"]["id"] for r in b]
    assert len(popqa_b) == 2 and set(popqa_b) <= set(
        popqa_a
    )  # same draw, capped; nq's presence changes nothing
    assert popqa_a == sorted(popqa_a, key=lambda i: int(i.split("_")[1]))  # file order kept


def test_strategy_protocol_and_variants_reach_the_rows(flashrag_dir, tmp_path, capsys):
    run(
        capsys,
        "--input-dir",
        flashrag_dir(),
        "--output-dir",
        tmp_path,
        "--protocol",
        "tool_call",
        "--strategy",
        "expandsearch",
        "--num-variants",
        5,
        "--train-datasets",
        "",
        "--max-per-dataset",
        1,
    )
    rows = rows_of(tmp_path / "test.parquet")
    assert {r["extra_info"]["protocol"] for r in rows} == {"tool_call"}
    assert '"query 5"' in rows[0]["prompt"][0]["content"]


def test_refuses_to_overwrite_without_the_flag(flashrag_dir, tmp_path, capsys):
    src = flashrag_dir()
    assert run(capsys, "--input-dir", src, "--output-dir", tmp_path)[0] == 0
    before = (tmp_path / "test.parquet").read_bytes()
    code, _, err = run(capsys, "--input-dir", src, "--output-dir", tmp_path, "--seed", 1)
    assert code == 2 and "already exist" in err and "--overwrite" in err
    assert (tmp_path / "test.parquet").read_bytes() == before
    assert run(capsys, "--input-dir", src, "--output-dir", tmp_path, "--seed", 1, "--overwrite")[0] == 0


def test_malformed_json_names_file_and_line_and_writes_nothing(flashrag_dir, write_split, tmp_path, capsys):
    src = flashrag_dir()
    bad = write_split(src, "musique", "dev", [], raw_lines=[json.dumps(qa("d0", "q?", ["a"])), "{not json"])
    code, _, err = run(capsys, "--input-dir", src, "--output-dir", tmp_path / "out")
    assert code == 2 and f"{bad}:2: malformed JSON" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_rows_missing_fields_are_listed_up_to_ten(flashrag_dir, write_split, tmp_path, capsys):
    src = flashrag_dir()
    rows = [qa("ok", "fine?", ["yes"])]
    rows += [{"id": f"noq{i}", "golden_answers": ["x"]} for i in range(8)]
    rows += [{"id": f"nogold{i}", "question": "q?"} for i in range(3)]
    rows += [qa("badtype", "q?", "a string"), qa("blank", "   ", ["x"]), ["not", "an", "object"]]
    write_split(src, "nq", "train", rows)
    code, _, err = run(capsys, "--input-dir", src, "--output-dir", tmp_path / "out")
    assert code == 2 and "14 invalid row(s)" in err and "... and 4 more" in err
    assert "id 'noq0' (line 2): missing 'question'" in err and "--skip-invalid" in err
    assert not (tmp_path / "out" / "test.parquet").exists()  # test was fine, but nothing is half-done

    code, stdout, _ = run(capsys, "--input-dir", src, "--output-dir", tmp_path / "out", "--skip-invalid")
    assert code == 0 and "14 invalid" in stdout
    train = rows_of(tmp_path / "out" / "train.parquet")
    assert [r["extra_info"]["id"] for r in train if r["data_source"] == "nq"] == ["ok"]


def test_empty_answers_and_duplicate_ids_are_skipped_and_counted(flashrag_dir, write_split, tmp_path, capsys):
    src = flashrag_dir()
    write_split(
        src,
        "bamboogle",
        "test",
        [
            qa("t0", "first?", ["A", " A ", ""]),  # answers are stripped and deduplicated
            qa("t1", "no answers?", []),
            qa("t2", "blank answers?", ["", "  "]),
            qa("t0", "same id again?", ["B"]),
            qa(3, "numeric id and answer?", [1889]),
        ],
    )
    code, stdout, _ = run(capsys, "--input-dir", src, "--output-dir", tmp_path, "--train-datasets", "")
    assert code == 0
    line = next(line for line in stdout.splitlines() if "bamboogle" in line)
    assert "1 duplicate id" in line and "2 empty golden_answers" in line and line.split()[3] == "2"
    rows = [r for r in rows_of(tmp_path / "test.parquet") if r["data_source"] == "bamboogle"]
    assert [(r["extra_info"]["id"], r["reward_model"]["ground_truth"]["target"]) for r in rows] == [
        ("t0", ["A"]),
        ("3", ["1889"]),
    ]


def test_unknown_dataset_lists_the_known_ones(tmp_path, capsys):
    code, _, err = run(capsys, "--output-dir", tmp_path, "--test-datasets", "nq,webqa,strategyqa")
    assert code == 2 and "unknown dataset(s) webqa, strategyqa" in err
    assert "nq, triviaqa, popqa, hotpotqa, 2wikimultihopqa, musique, bamboogle" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train-datasets", "popqa"], "popqa has no 'train' split in FlashRAG (it has: test)"),
        (["--sample-ratio", "1.5"], "--sample-ratio: 1.5 must be in (0, 1]"),
        (["--max-per-dataset", "0"], "--max-per-dataset: 0 must be >= 1"),
        (["--num-variants", "0"], "num_variants: 0 is outside 1..10"),
        (["--train-datasets", "", "--test-datasets", ""], "both empty"),
    ],
)
def test_bad_options_are_named(flashrag_dir, tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "--input-dir", flashrag_dir(), "--output-dir", tmp_path / "o", *argv)
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists()


def test_missing_split_file_and_missing_input_dir(flashrag_dir, tmp_path, capsys):
    src = flashrag_dir()
    (src / "nq" / "train.jsonl").unlink()
    code, _, err = run(capsys, "--input-dir", src, "--output-dir", tmp_path)
    assert code == 2 and "nq/train.jsonl: no such file (found splits: dev, test)" in err
    code, _, err = run(capsys, "--input-dir", tmp_path / "nowhere", "--output-dir", tmp_path)
    assert code == 2 and "is not a directory" in err


def test_a_split_with_no_valid_rows_is_an_error(flashrag_dir, write_split, tmp_path, capsys):
    src = flashrag_dir()
    for dataset in ("nq", "hotpotqa"):
        write_split(src, dataset, "train", [qa("x", "q?", [])])
    code, _, err = run(capsys, "--input-dir", src, "--output-dir", tmp_path / "o")
    assert code == 2 and "train: no valid rows left" in err


def test_hub_offline_says_how_to_use_local_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(
        capsys,
        "--from-hub",
        "--output-dir",
        tmp_path,
        "--cache-dir",
        tmp_path / "cache",
        "--train-datasets",
        "",
        "--test-datasets",
        "bamboogle",
    )
    assert code == 2
    assert "cannot load RUC-NLPIR/FlashRAG_datasets/bamboogle[test] from the hub" in err
    assert "--input-dir DIR" in err


def test_main_job_on_the_shipped_samples(tmp_path):
    """The README's main-job command, as a user types it."""
    out = subprocess.run(
        [sys.executable, "-m", "data_prep", "--output-dir", str(tmp_path / "outputs" / "data")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    train = rows_of(tmp_path / "outputs" / "data" / "train.parquet")
    test = rows_of(tmp_path / "outputs" / "data" / "test.parquet")
    assert len(train) == 60 and len(test) == 140
    assert {r["data_source"] for r in test} == set(DATASETS)
    assert "skipped" in out.stdout and "wrote" in out.stdout
