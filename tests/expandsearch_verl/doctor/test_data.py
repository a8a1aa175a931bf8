"""train-data / val-data: the parquet files against docs/design.md's row schema, the agent-loop names, sizes, lengths."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from expandsearch_verl.doctor.report import Status


def write_variant(source: Path, target: Path, change) -> Path:
    """A copy of a prepared parquet file with `change(table) -> table` applied."""
    pq.write_table(change(pq.read_table(source)), target)
    return target


def test_prepared_data_passes_and_lists_its_sources(small_run, preflight):
    ctx, results = preflight(small_run(), "train-data", "val-data")
    assert [r.status for r in results] == [Status.PASS, Status.PASS], results
    assert "60 rows (" in results[0].detail
    assert "140 rows (" in results[1].detail and "bamboogle 20" in results[1].detail
    assert ctx.tokenizer is not None  # the prompts were measured with the actor's chat template


def test_validation_in_one_batch_warns_unless_the_sample_is_a_batch(small_run, preflight):
    """verl's val_batch_size null sends the whole test file at once (51k questions at full size)."""
    _, results = preflight(small_run("data.val_batch_size=null"), "val-data")
    assert [r.status for r in results] == [Status.PASS, Status.WARN], results
    assert "all 140 rows to the rollout, the retriever and the squeezer at once" in results[1].detail
    assert results[1].fix == "data.val_batch_size=16"
    _, results = preflight(small_run("data.val_batch_size=null", "data.val_max_samples=16"), "val-data")
    assert [r.status for r in results] == [Status.PASS], results


def test_a_missing_file_fails_with_the_data_prep_command(small_run, preflight, tmp_path):
    _, results = preflight(small_run(f"data.train_files={tmp_path}/nope.parquet"), "train-data")
    assert results[0].status is Status.FAIL and "no such file" in results[0].detail
    assert results[0].fix == f"prepare it: python -m data_prep --output-dir {tmp_path}"


def test_a_remote_path_is_not_read(small_run, preflight):
    _, results = preflight(small_run("data.val_files=hdfs://cluster/data/test.parquet"), "val-data")
    assert [r.status for r in results] == [Status.SKIP] and "remote path" in results[0].detail


def test_a_file_without_agent_name_fails(small_run, preflight, prepared_data_dir, tmp_path):
    path = write_variant(
        prepared_data_dir / "train.parquet",
        tmp_path / "train.parquet",
        lambda t: t.drop_columns(["agent_name"]),
    )
    _, results = preflight(small_run(f"data.train_files={path}"), "train-data")
    assert results[0].status is Status.FAIL and "column 'agent_name' is missing" in results[0].detail
    assert "python -m data_prep" in results[0].fix


def test_a_wrong_schema_fails_naming_the_field(small_run, preflight, prepared_data_dir, tmp_path):
    def flatten_prompt(table: pa.Table) -> pa.Table:
        text = pa.array([str(messages) for messages in table.column("prompt").to_pylist()])
        return table.set_column(table.schema.get_field_index("prompt"), "prompt", text)

    path = write_variant(prepared_data_dir / "test.parquet", tmp_path / "test.parquet", flatten_prompt)
    _, results = preflight(small_run(f"data.val_files={path}"), "val-data")
    assert results[0].status is Status.FAIL and "'prompt' is string, expected a list" in results[0].detail


def test_an_unknown_agent_name_fails(small_run, preflight, prepared_data_dir, tmp_path):
    def rename(table: pa.Table) -> pa.Table:
        names = pa.array(["some_other_agent"] * table.num_rows)
        return table.set_column(table.schema.get_field_index("agent_name"), "agent_name", names)

    path = write_variant(prepared_data_dir / "train.parquet", tmp_path / "train.parquet", rename)
    _, results = preflight(small_run(f"data.train_files={path}"), "train-data")
    assert results[0].status is Status.FAIL and "['some_other_agent']" in results[0].detail


def test_fewer_rows_than_a_batch_fail(small_run, preflight):
    _, results = preflight(
        small_run("data.train_batch_size=64", "actor_rollout_ref.actor.ppo_mini_batch_size=32"), "train-data"
    )
    assert results[0].status is Status.FAIL and "60 rows < data.train_batch_size=64" in results[0].detail


def test_a_prompt_longer_than_the_limit_fails_before_training(small_run, preflight):
    _, results = preflight(small_run("data.max_prompt_length=256"), "train-data")
    assert (
        results[0].status is Status.FAIL
        and "with the chat template > data.max_prompt_length=256" in results[0].detail
    )
    assert "data.filter_overlong_prompts=True" in results[0].fix
    _, results = preflight(
        small_run("data.max_prompt_length=256", "data.filter_overlong_prompts=True"), "train-data"
    )
    assert results[0].status is Status.PASS


def test_rows_without_a_gold_answer_fail(small_run, preflight, prepared_data_dir, tmp_path):
    def empty_answers(table: pa.Table) -> pa.Table:
        rows = table.to_pylist()
        rows[0]["reward_model"]["ground_truth"]["target"] = []
        return pa.Table.from_pylist(rows, schema=table.schema)

    path = write_variant(prepared_data_dir / "train.parquet", tmp_path / "train.parquet", empty_answers)
    _, results = preflight(small_run(f"data.train_files={path}"), "train-data")
    assert results[0].status is Status.FAIL and "1 rows have no gold answer" in results[0].detail


def test_a_val_file_without_all_seven_test_sets_warns(small_run, preflight, prepared_data_dir, tmp_path):
    def nq_only(table: pa.Table) -> pa.Table:
        return table.filter(pa.compute.equal(table.column("data_source"), "nq"))

    path = write_variant(prepared_data_dir / "test.parquet", tmp_path / "test.parquet", nq_only)
    _, results = preflight(small_run(f"data.val_files={path}"), "val-data")
    assert [r.status for r in results] == [Status.WARN, Status.PASS]
    assert "1 of the papers' 7 test sets" in results[0].detail
