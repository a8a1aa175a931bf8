"""Agent loops built for evaluation exactly as verl's `AgentLoopWorker` builds them in training.

The worker reads the YAML list at `agent_loop_config_path` into a registry keyed by `name` and, for
every trajectory, `hydra.utils.instantiate`s the row's entry with the trainer config, the LLM
client, the tokenizer, the model type and the data config. `LoopBuilder` does the same over verl's
own composed `ppo_trainer` config (prompt and response lengths and any `--verl-override` applied),
so `expandsearch eval` runs the very `ExpandSearchAgentLoop.run()` that training runs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expandsearch_verl.config import AGENT_NAME, AGENT_TARGET, AgentLoopConfig, ConfigError
from expandsearch_verl.retriever_client import TRANSPORT_FIELDS

# Settings that say where and how to reach the retriever, not what the evaluation measures: a
# resumed run may change them (the demo's retriever gets a new port every time).
TRANSPORT_SETTINGS = frozenset(TRANSPORT_FIELDS)


class LoopConfigError(ValueError):
    """The agent-loop YAML, a setting or a verl override is unusable; the message says which and why."""


class LoopBuilder:
    """Instantiates the YAML's agent loops per trajectory, with the arguments `AgentLoopWorker` passes."""

    def __init__(
        self,
        yaml_path: str | Path,
        *,
        tokenizer: Any,
        model_path: str,
        prompt_length: int,
        response_length: int,
        settings: Mapping[str, Any] | None = None,
        verl_overrides: Sequence[str] = (),
    ):
        """
        Args:
            yaml_path: the agent-loop YAML (the shipped one, or a variant from `agent-loop-config`).
            model_path: the policy's HF directory: its `model_type` picks verl's chat builder.
            settings: values that replace the YAML's in every ExpandSearch entry (`--set`, `--retriever-url`).
            verl_overrides: hydra overrides of the trainer config, e.g.
                `data.apply_chat_template_kwargs.enable_thinking=false`.
        """
        for name, value in (("prompt_length", prompt_length), ("response_length", response_length)):
            if value < 1:
                raise LoopConfigError(f"--{name.replace('_', '-')}: {value} must be >= 1")
        self.tokenizer = tokenizer
        self.hf_model_type = _model_type(model_path)
        self.entries = _load_entries(Path(yaml_path), dict(settings or {}))
        self.settings = {name: _settings_of(name, entry) for name, entry in self.entries.items()}
        self.trainer_config = compose_trainer_config(prompt_length, response_length, list(verl_overrides))

    def resolve_name(self, agent_name: str | None) -> str:
        """The entry a row runs: its own `agent_name`, else `expandsearch_agent` (or the only entry)."""
        if agent_name is None:
            agent_name = (
                AGENT_NAME
                if AGENT_NAME in self.entries or len(self.entries) != 1
                else next(iter(self.entries))
            )
        if agent_name not in self.entries:
            raise LoopConfigError(
                f"agent loop {agent_name!r} (a row's agent_name) is not in the agent-loop YAML; it has {sorted(self.entries)}"
            )
        return agent_name

    def build(self, agent_name: str, server_manager: Any) -> Any:
        """A fresh loop for one trajectory (verl builds one per trajectory too)."""
        import hydra
        from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
        from verl.utils.dataset.rl_dataset import RLHFDataset

        loop = hydra.utils.instantiate(
            config=self.entries[agent_name],
            trainer_config=DictConfigWrap(config=self.trainer_config),
            server_manager=server_manager,
            tokenizer=self.tokenizer,
            processor=None,
            hf_model_type=self.hf_model_type,
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(self.trainer_config.data),
            tools=ToolListWrap([]),
        )
        # verl warns on every build for a model family without its own token builder (SmolLM2's
        # llama): once is enough, the builder is the same for every trajectory
        logging.getLogger("verl.utils.tokenizer.continuous_token_wiring").setLevel(logging.ERROR)
        return loop

    def describe(self) -> dict[str, Any]:
        """What the loops measure with (every setting but the transport ones), for the run's record."""
        return {
            name: {
                key: value
                for key, value in dataclasses.asdict(config).items()
                if key not in TRANSPORT_SETTINGS
            }
            for name, config in self.settings.items()
        }


def _load_entries(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not path.is_file():
        raise LoopConfigError(f"--agent-loop-config: {path} is not a file")
    try:
        loaded = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, OSError) as error:
        raise LoopConfigError(f"--agent-loop-config: {path} is not readable YAML ({error})") from None
    if not OmegaConf.is_list(loaded) or not loaded:
        raise LoopConfigError(f"--agent-loop-config: {path} must be a YAML list of agent-loop entries")
    entries = {}
    for number, entry in enumerate(loaded):
        if not OmegaConf.is_dict(entry) or not isinstance(entry.get("name"), str):
            raise LoopConfigError(f"--agent-loop-config: {path}: entry {number} needs a `name`")
        if entry.get("_target_") != AGENT_TARGET:
            raise LoopConfigError(
                f"--agent-loop-config: {path}: entry {entry.name!r} targets {entry.get('_target_')!r}; "
                f"expandsearch eval runs {AGENT_TARGET} entries"
            )
        for key, value in settings.items():
            entry[key] = value
        entries[entry.name] = entry
    return entries


def _settings_of(name: str, entry: Any) -> AgentLoopConfig:
    """The entry's settings, checked now (the loop would refuse them on the first trajectory)."""
    from omegaconf import OmegaConf

    kwargs = {
        key: value for key, value in OmegaConf.to_container(entry).items() if key not in ("name", "_target_")
    }
    try:
        return AgentLoopConfig.from_kwargs(**kwargs)
    except ConfigError as error:
        raise LoopConfigError(f"agent loop {name!r}: {error}") from None


def _model_type(model_path: str) -> str | None:
    """The HF `model_type` verl would read from the policy's config (None: verl's generic builder)."""
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(model_path).model_type
    except (OSError, ValueError):
        return None
    return model_type if isinstance(model_type, str) else None


def compose_trainer_config(prompt_length: int, response_length: int, overrides: Sequence[str] = ()) -> Any:
    """verl's `ppo_trainer` config with our lengths and overrides, resolved as main_ppo resolves it.

    The loop reads the rollout and data subtrees only; the model itself is the policy's business.
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            config = compose(
                config_name="ppo_trainer",
                overrides=[
                    "actor_rollout_ref.rollout.name=vllm",
                    f"data.max_prompt_length={prompt_length}",
                    f"data.max_response_length={response_length}",
                    *overrides,
                ],
            )
        return OmegaConf.create(OmegaConf.to_container(config, resolve=True))
    except (HydraException, OmegaConfBaseException) as error:
        raise LoopConfigError(f"--verl-override {overrides}: {error}") from None
