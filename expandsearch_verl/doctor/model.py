"""Checks on the model paths: a Hugging Face directory (or a cached hub id) verl can load, whose
tokenizer has the chat template the prompts need; the actor's tokenizer is kept for the data check.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from expandsearch_verl.doctor.context import Preflight
from expandsearch_verl.doctor.report import CheckResult, failed, passed, warned

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")


def check_models(ctx: Preflight) -> list[CheckResult]:
    """The actor's model (and the critic's, when PPO trains one)."""
    name = "model"
    from verl.trainer.ppo.utils import need_critic

    roles = [("actor", "actor_rollout_ref.model.path")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if need_critic(ctx.config) and ctx.select("critic.model.path") != ctx.select(
            "actor_rollout_ref.model.path"
        ):
            roles.append(("critic", "critic.model.path"))
    results = []
    for role, key in roles:
        result, tokenizer = _check_model(ctx, name, role, key)
        results.append(result)
        if role == "actor":
            ctx.tokenizer = tokenizer
    return results


def _check_model(ctx: Preflight, name: str, role: str, key: str) -> tuple[CheckResult, Any]:
    raw = str(ctx.select(key))
    directory = Path(os.path.expanduser(raw))
    if directory.is_dir():
        return _check_directory(name, role, key, directory)
    if raw.startswith(("/", "~", ".")) or raw.count("/") != 1:
        return failed(
            name,
            f"{role}: {key}={raw}: no such directory",
            f"point {key} at a model directory (for evaluation: a merged checkpoint, README 'Merge the checkpoint')",
        ), None
    return _check_hub_id(ctx, name, role, key, raw)


def _check_directory(name: str, role: str, key: str, directory: Path) -> tuple[CheckResult, Any]:
    config_file = directory / "config.json"
    if not config_file.is_file():
        return failed(
            name, f"{role}: {directory} has no config.json", f"point {key} at a Hugging Face model directory"
        ), None
    config = json.loads(config_file.read_text())
    if not config.get("architectures"):
        return failed(
            name,
            f"{role}: {config_file} names no 'architectures' (verl's HFModelConfig needs it)",
            'save the model with transformers\' save_pretrained, or add "architectures": ["...ForCausalLM"]',
        ), None
    if not any(any(directory.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        return failed(
            name,
            f"{role}: {directory} has no weights ({', '.join(WEIGHT_PATTERNS)})",
            "for a verl checkpoint merge it first: python -m verl.model_merger merge --backend fsdp ...",
        ), None
    tokenizer, problem = _load_tokenizer(name, role, str(directory), local_only=True)
    if problem is not None:
        return problem, None
    return _verdict(name, role, str(directory), config, tokenizer), tokenizer


def _check_hub_id(ctx: Preflight, name: str, role: str, key: str, model_id: str) -> tuple[CheckResult, Any]:
    tokenizer, problem = _load_tokenizer(name, role, model_id, local_only=True)
    if problem is None:
        return _verdict(
            name, role, f"{model_id} (Hugging Face cache)", _hub_config(model_id), tokenizer
        ), tokenizer
    if ctx.skip_network:
        return warned(
            name,
            f"{role}: {model_id} is neither a local directory nor in the Hugging Face cache; every worker "
            "downloads it when the run starts",
            f"hf download {model_id} (into a HF_HOME every node shares), or point {key} at a directory",
        ), None
    tokenizer, problem = _load_tokenizer(name, role, model_id, local_only=False)
    if problem is not None:
        return problem, None
    return _verdict(
        name, role, f"{model_id} (downloaded from the hub)", _hub_config(model_id), tokenizer
    ), tokenizer


def _load_tokenizer(name: str, role: str, source: str, local_only: bool) -> tuple[Any, CheckResult | None]:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=local_only), None
    except Exception as exc:
        return None, failed(
            name,
            f"{role}: the tokenizer of {source} does not load: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            "point the model path at a directory with tokenizer files (tokenizer.json / tokenizer_config.json)",
        )


def _hub_config(model_id: str) -> dict[str, Any]:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_id, local_files_only=True).to_dict()
    except Exception:
        return {}


def _verdict(name: str, role: str, where: str, config: dict[str, Any], tokenizer: Any) -> CheckResult:
    if not getattr(tokenizer, "chat_template", None):
        return failed(
            name,
            f"{role}: the tokenizer of {where} has no chat template; the rows' prompts are chat messages",
            "use an -Instruct model, or set actor_rollout_ref.model.custom_chat_template",
        )
    # verl picks a model-specific Continuous-Token builder by config.json's model_type; any other
    # type gets the generic builder, which has to guess where one turn ends and the next begins.
    # (A private table: the reach `continuous_token_families` of expandsearch_verl.verl_internals.)
    from verl.utils.tokenizer.continuous_token_wiring import _MODEL_TYPE_TO_FAMILY

    model_type = config.get("model_type", "unknown")
    detail = f"{role}: {where}: {model_type} {config.get('architectures', [''])[0]}, vocab {len(tokenizer):,}, chat template present"
    if model_type not in _MODEL_TYPE_TO_FAMILY:
        return warned(
            name,
            f"{detail}; verl 0.9.1 has no Continuous-Token builder for '{model_type}'",
            "check one trajectory's tokens (mask-0 observations between the model's turns) before a long run",
        )
    return passed(name, detail)
