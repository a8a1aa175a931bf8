"""verl's AgentLoopWorker as a training step drives it, without Ray: the trainer config composed as
main_ppo composes it, the first batch of data_prep's parquet through RLHFDataset, and Ray actor
handles over local objects."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from verl.protocol import DataProto
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

from expandsearch_verl.evaluation.loop_builder import compose_trainer_config

PROMPT_LENGTH, RESPONSE_LENGTH, BATCH = 1024, 1024, 6


class LocalActor:
    """A Ray actor handle's shape over a local object: `await handle.method.remote(...)`."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, name: str):
        return SimpleNamespace(remote=getattr(self._target, name))


def trainer_config(
    tmp_path: Path, model_dir: Path, data_dir: Path, loop_yaml: Path, overrides: tuple[str, ...] = ()
):
    """verl's trainer config for this run (plus `overrides`), resolved as main_ppo resolves it."""
    return compose_trainer_config(
        PROMPT_LENGTH,
        RESPONSE_LENGTH,
        [
            f"actor_rollout_ref.model.path={model_dir}",
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={loop_yaml}",
            "reward.custom_reward_function.path=pkg://expandsearch_verl.reward",
            f"data.train_files={data_dir / 'train.parquet'}",
            f"+data.cache_dir={tmp_path / 'cache'}",
            *overrides,
        ],
    )


def first_batch(config, tokenizer) -> DataProto:
    data_config = OmegaConf.create(OmegaConf.to_container(config.data, resolve=True))
    dataset = RLHFDataset(data_files=[config.data.train_files], tokenizer=tokenizer, config=data_config)
    return DataProto.from_single_dict(
        next(iter(DataLoader(dataset, batch_size=BATCH, collate_fn=collate_fn)))
    )
