"""The parquet data_prep writes is read by verl 0.9.1's own RLHFDataset and collate_fn."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from transformers import AutoTokenizer
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

from data_prep.cli import main


@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
def test_rlhf_dataset_reads_our_parquet(
    flashrag_dir, chat_model_dir: Path, tmp_path: Path, protocol: str, capsys
):
    assert (
        main(["--input-dir", str(flashrag_dir()), "--output-dir", str(tmp_path), "--protocol", protocol]) == 0
    )
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose(
            config_name="ppo_trainer",
            overrides=[
                "actor_rollout_ref.rollout.name=vllm",
                "data.max_prompt_length=1024",
                "data.filter_overlong_prompts=True",  # applies the chat template to every row
                f"+data.cache_dir={tmp_path / 'cache'}",
            ],
        )
    data_config = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    dataset = RLHFDataset(
        data_files=[str(tmp_path / "train.parquet")], tokenizer=tokenizer, config=data_config, processor=None
    )
    assert len(dataset) == 6  # nothing filtered: our prompts fit

    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_fn)))
    assert list(batch["agent_name"]) == ["expandsearch_agent"] * 4
    assert set(batch["data_source"]) <= {"nq", "hotpotqa"}
    assert batch["dummy_tensor"].shape == (4, 1)
    first = batch["raw_prompt"][0]
    assert [m["role"] for m in first] == ["system", "user"] and first[1]["content"].startswith("Question: ")
    assert [info["protocol"] for info in batch["extra_info"]] == [protocol] * 4
    assert list(batch["index"]) == [info["index"] for info in batch["extra_info"]]
    assert all(len(rm["ground_truth"]["target"]) >= 1 for rm in batch["reward_model"])
    rendered = tokenizer.apply_chat_template(list(first), add_generation_prompt=True, tokenize=False)
    assert rendered.endswith(f"<|im_start|>user\n{first[1]['content']}<|im_end|>\n<|im_start|>assistant\n")
