"""The warm start's fine-tune: verl's SFT trainer on the CPU backend, once per inputs (cached).

The real `python -m expandsearch_verl.cpu.sft` runs on the tiny random chat model over examples cut
like the builder's (prompt masked, a turn trained, an observation masked, the answer trained).
"""

from __future__ import annotations

import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expandsearch_verl.warm_start.finetune import (
    FinetuneSettings,
    cache_key,
    fastest_precision,
    finetune,
    main,
    sft_overrides,
)


def write_examples(path, tokenizer, n: int = 4) -> None:
    rows = []
    for i in range(n):
        prompt = tokenizer.encode(f"<|im_start|>user\nwho wrote book {i}?<|im_end|>\n<|im_start|>assistant\n")
        turn = tokenizer.encode(f"<search>\nbook {i}\n</search>")
        observation = tokenizer.encode(f"\n<information>doc {i}</information>\n")
        answer = tokenizer.encode(f"<answer> author {i} </answer><|im_end|>")
        ids = prompt + turn + observation + answer
        mask = [0] * len(prompt) + [1] * len(turn) + [0] * len(observation) + [1] * len(answer)
        rows.append({"input_ids": ids, "loss_mask": mask})
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_the_cache_key_follows_the_examples_the_model_and_the_settings(tmp_path, chat_model_dir):
    from transformers import AutoTokenizer

    examples = tmp_path / "examples.parquet"
    write_examples(examples, AutoTokenizer.from_pretrained(chat_model_dir))
    key = cache_key(examples, str(chat_model_dir), FinetuneSettings())
    assert key == cache_key(examples, str(chat_model_dir), FinetuneSettings())
    assert key != cache_key(examples, str(chat_model_dir), FinetuneSettings(steps=3))
    assert key != cache_key(examples, str(tmp_path), FinetuneSettings())
    write_examples(examples, AutoTokenizer.from_pretrained(chat_model_dir), n=3)
    assert key != cache_key(examples, str(chat_model_dir), FinetuneSettings())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "steps=0: must be >= 1"),
        ("lr", 2.0, "lr=2.0: must be in"),
        ("warmup_ratio", 1.0, "warmup_ratio"),
        ("precision", "fp16", r"precision='fp16': must be one of \('bf16', 'fp32'\)"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(field, value, message):
    with pytest.raises(ValueError, match=message):
        FinetuneSettings(**{field: value})


def test_the_compute_dtype_reaches_verl_and_the_cache_key(tmp_path):
    assert fastest_precision() in ("bf16", "fp32")
    for precision in ("bf16", "fp32"):
        overrides = sft_overrides(tmp_path, "model", tmp_path, FinetuneSettings(precision=precision))
        assert (
            f"++engine.mixed_precision={{param_dtype:{precision},reduce_dtype:fp32,buffer_dtype:fp32}}"
            in overrides
        )
    examples = tmp_path / "examples.parquet"
    examples.write_bytes(b"rows")
    bf16, fp32 = (cache_key(examples, "model", FinetuneSettings(precision=p)) for p in ("bf16", "fp32"))
    assert bf16 != fp32


def test_the_command_line_names_a_missing_file(tmp_path, capsys):
    assert (
        main([str(tmp_path / "none.parquet"), "--policy-model", str(tmp_path), "--cache-dir", str(tmp_path)])
        == 1
    )
    assert "none.parquet" in capsys.readouterr().err


def test_verl_sft_trainer_fine_tunes_on_cpu_once(tmp_path, chat_model_dir, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    examples = tmp_path / "examples.parquet"
    write_examples(examples, AutoTokenizer.from_pretrained(chat_model_dir))
    settings = FinetuneSettings(steps=2, batch_size=2, lr=1e-2, max_length=256)
    with open(tmp_path / "sft.log", "w") as log:
        tuned = finetune(
            examples, str(chat_model_dir), settings, tmp_path / "cache", tmp_path / "run", log=log
        )
    output = (tmp_path / "sft.log").read_text()
    assert "step:2 - " in output and "train/loss:" in output, output[-3000:]
    assert tuned.parent == tmp_path / "cache" / "warm_start" and (tuned / "config.json").is_file()
    assert (tuned / "generation_config.json").read_text() == (
        chat_model_dir / "generation_config.json"
    ).read_text()
    before = AutoModelForCausalLM.from_pretrained(chat_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tuned).state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[name], after[name]) for name in before), "no weight moved"
    assert not (tmp_path / "run" / "checkpoints").exists()  # only the cached copy is kept

    def no_training(*args, **kwargs):
        raise AssertionError("the cached fine-tune was trained again")

    monkeypatch.setattr(subprocess, "run", no_training)
    assert finetune(examples, str(chat_model_dir), settings, tmp_path / "cache", tmp_path / "run2") == tuned
