"""The install is what the plugin needs: verl 0.9.1 imports, composes its config, sees our fixtures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_verl_is_the_pinned_version_and_agent_loop_imports():
    import verl
    from verl.experimental.agent_loop import AgentLoopBase, AgentLoopWorker  # needs cachetools, uvicorn

    assert verl.__version__ == "0.9.1"
    assert AgentLoopBase.__abstractmethods__ == frozenset({"run"})
    assert hasattr(AgentLoopWorker, "generate_sequences")


def test_verl_hydra_config_composes_on_cpu():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=["actor_rollout_ref.rollout.name=vllm"])
    assert cfg.actor_rollout_ref.rollout.agent.agent_loop_config_path is None
    assert cfg.reward.custom_reward_function.name == "compute_score"


def test_torch_is_the_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert not torch.cuda.is_available() or "+cpu" not in torch.__version__


def test_chat_model_fixture_meets_verl_qwen_builder(chat_model_dir: Path):
    from transformers import AutoConfig, AutoTokenizer
    from verl.utils.tokenizer.continuous_token import QwenContinuousTokenBuilder
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    model_type = AutoConfig.from_pretrained(chat_model_dir).model_type
    builder = create_continuous_token_builder(tokenizer, hf_model_type=model_type)
    assert isinstance(builder, QwenContinuousTokenBuilder)

    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Who?"}]
    text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nsys\n\n# Tools") and '"name": "search"' in text
    assert text.endswith("<|im_start|>user\nWho?<|im_end|>\n<|im_start|>assistant\n")
    tool_turn = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": "x"}, {"role": "tool", "content": "R"}], tokenize=False
    )
    assert tool_turn.endswith("<|im_start|>user\n<tool_response>\nR\n</tool_response><|im_end|>\n")
    ids = tokenizer.encode("<answer> Paris </answer>", add_special_tokens=False)
    assert tokenizer.decode(ids) == "<answer> Paris </answer>"


def test_offline_models_are_installed(minilm_path: Path, smollm2_gguf: Path):
    assert (minilm_path / "config.json").is_file() and (minilm_path / "model.safetensors").is_file()
    assert smollm2_gguf.is_file() and smollm2_gguf.stat().st_size > 50_000_000


def test_expandsearch_command_is_installed():
    out = subprocess.run(
        [Path(sys.executable).with_name("expandsearch"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("expandsearch-verl ")


@pytest.mark.parametrize("module", ["expandsearch_verl.cli", "data_prep"])
def test_module_cli_help(module: str):
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command: list[str]):
    """`ruff check` and `ruff format --check` over the whole checkout: style drift fails CI, not review."""
    out = subprocess.run(
        [sys.executable, "-m", "ruff", *command, str(REPO_ROOT)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
