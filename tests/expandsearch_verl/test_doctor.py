"""`expandsearch doctor` end to end: the same overrides a recipe passes, the table, the exit status."""

from __future__ import annotations

import json

from expandsearch_verl.cli import main
from expandsearch_verl.preflight import CHECK_NAMES
from expandsearch_verl.preflight.report import CheckResult, Status, render_table

# Facts of this CPU machine, not of the run: no GPU, no vLLM, and maybe a stale editable install.
MACHINE_BOUND = ["--skip", "gpus", "--skip", "engine", "--skip", "plugin"]


def small_run_overrides(chat_model_dir, prepared_data_dir, yaml_path) -> list[str]:
    return [
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.model.path={chat_model_dir}",
        f"critic.model.path={chat_model_dir}",
        f"data.train_files={prepared_data_dir / 'train.parquet'}",
        f"data.val_files={prepared_data_dir / 'test.parquet'}",
        "data.train_batch_size=16",
        "data.max_prompt_length=1024",
        "data.max_response_length=2048",
        "actor_rollout_ref.actor.ppo_mini_batch_size=8",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "critic.ppo_micro_batch_size_per_gpu=4",
        "critic.forward_micro_batch_size_per_gpu=8",
        "trainer.n_gpus_per_node=2",
        "trainer.use_v1=false",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={yaml_path}",
        "reward.custom_reward_function.path=pkg://expandsearch_verl.reward",
    ]


def write_yaml(tmp_path, *assignments: str):
    from expandsearch_verl.config import AgentLoopConfig

    path = tmp_path / "agent_loops.yaml"
    path.write_text(AgentLoopConfig().with_overrides(list(assignments)).to_yaml())
    return path


def test_a_sound_run_passes_and_exits_0(chat_model_dir, prepared_data_dir, demo_retriever_url, tmp_path, capsys):
    yaml_path = write_yaml(tmp_path, f"retriever_urls=[{demo_retriever_url}]", "squeeze=false")
    status = main(["doctor", *MACHINE_BOUND, *small_run_overrides(chat_model_dir, prepared_data_dir, yaml_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.splitlines()[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert "0 failed" in out and "FAIL" not in out
    for name in ("config", "validate", "batches", "reward", "agent-loop", "model", "train-data", "val-data", "retriever", "squeezer"):
        assert any(line.startswith(name + " ") and " pass " in line for line in out.splitlines()), name


def test_a_failure_exits_1_with_its_fix_under_it(chat_model_dir, prepared_data_dir, tmp_path, capsys):
    yaml_path = write_yaml(tmp_path)
    overrides = [*small_run_overrides(chat_model_dir, prepared_data_dir, yaml_path), f"actor_rollout_ref.model.path={tmp_path}/missing"]
    status = main(["doctor", "--skip-network", *MACHINE_BOUND, *overrides])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    failure = next(i for i, line in enumerate(lines) if line.startswith("model ") and " FAIL " in line)
    fix = next(line for line in lines[failure + 1 :] if "fix:" in line)
    assert fix.strip().startswith("fix: point actor_rollout_ref.model.path at a model directory")


def test_json_output_lists_every_result(chat_model_dir, prepared_data_dir, tmp_path, capsys):
    yaml_path = write_yaml(tmp_path)
    status = main(["doctor", "--json", "--skip-network", *MACHINE_BOUND, *small_run_overrides(chat_model_dir, prepared_data_dir, yaml_path)])
    results = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [r["check"] for r in results if r["check"] in ("gpus", "retriever")] == ["retriever", "gpus"]
    assert {r["status"] for r in results} <= {"pass", "warn", "skip"}


def test_a_word_that_is_not_an_override_is_a_usage_error(capsys):
    assert main(["doctor", "trainer.nnodes=1", "oops"]) == 2
    assert "'oops' is not a hydra override" in capsys.readouterr().err


def test_skip_names_are_the_check_names(capsys):
    assert CHECK_NAMES[:3] == ["config", "validate", "batches"] and CHECK_NAMES[-1] == "ray-nodes"


def test_the_table_wraps_details_and_fixes_under_their_check():
    long = "word " * 40
    table = render_table([CheckResult("batches", Status.FAIL, long.strip(), "data.train_batch_size=16"),
                          CheckResult("config", Status.PASS, "fine")], width=80)
    lines = table.splitlines()
    assert lines[1].startswith("batches  FAIL    word")
    assert all(len(line) <= 80 for line in lines)
    fix = next(line for line in lines if "fix:" in line)
    assert fix.index("fix:") == lines[1].index("word")
    assert lines[-1] == "2 checks: 1 passed, 0 warnings, 1 failed, 0 skipped"
