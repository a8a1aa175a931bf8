"""model: a Hugging Face directory verl can load, with the chat template the prompts need."""

from __future__ import annotations

import json
import shutil

from expandsearch_verl.doctor.report import Status


def test_the_tiny_chat_model_passes(small_run, preflight, chat_model_dir):
    ctx, results = preflight(small_run(), "model")
    assert [r.status for r in results] == [Status.PASS]
    assert f"actor: {chat_model_dir}: qwen2 Qwen2ForCausalLM" in results[0].detail
    assert ctx.tokenizer is not None


def test_a_missing_directory_fails(small_run, preflight, tmp_path):
    _, results = preflight(small_run(f"actor_rollout_ref.model.path={tmp_path}/nope"), "model")
    assert results[0].status is Status.FAIL and "no such directory" in results[0].detail
    assert "actor_rollout_ref.model.path" in results[0].fix


def test_a_separate_critic_is_checked_too(small_run, preflight, tmp_path):
    _, results = preflight(small_run(f"critic.model.path={tmp_path}/nope"), "model")
    assert [r.status for r in results] == [Status.PASS, Status.FAIL] and results[1].detail.startswith(
        "critic:"
    )


def test_a_directory_without_weights_fails(small_run, preflight, chat_model_dir, tmp_path):
    copy = shutil.copytree(chat_model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("*.safetensors"))
    _, results = preflight(small_run(f"actor_rollout_ref.model.path={copy}"), "model")
    assert results[0].status is Status.FAIL and "has no weights" in results[0].detail
    assert "verl.model_merger" in results[0].fix


def test_a_tokenizer_without_chat_template_fails(small_run, preflight, chat_model_dir, tmp_path):
    copy = shutil.copytree(chat_model_dir, tmp_path / "model")
    for template in copy.glob("chat_template.*"):
        template.unlink()
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    _, results = preflight(small_run(f"actor_rollout_ref.model.path={copy}"), "model")
    assert results[0].status is Status.FAIL and "no chat template" in results[0].detail


def test_an_uncached_hub_id_warns_without_network(small_run, preflight):
    _, results = preflight(
        small_run("actor_rollout_ref.model.path=nobody/no-such-model"), "model", skip_network=True
    )
    assert results[0].status is Status.WARN and "hf download nobody/no-such-model" in results[0].fix
