"""Model loading: the offline models, GGUF conversion cached by file identity, HF directories."""

from __future__ import annotations

import os

import pytest

from retriever_server.models import (
    converted_gguf_dir,
    hf_source,
    load_causal_lm,
    offline_model_path,
    resolve_model,
)


def test_offline_models(minilm_path, smollm2_gguf):
    assert offline_model_path("minilm") == minilm_path
    assert offline_model_path("smollm2") == smollm2_gguf and smollm2_gguf.suffix == ".gguf"
    assert resolve_model("smollm2") == str(smollm2_gguf) and resolve_model("org/model") == "org/model"
    with pytest.raises(ValueError, match=r"choose one of \['minilm', 'smollm2'\]"):
        offline_model_path("llama")


def test_the_conversion_is_keyed_by_the_files_identity(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    first = converted_gguf_dir(gguf, tmp_path / "cache")
    assert (
        first == converted_gguf_dir(gguf, tmp_path / "cache")
        and first.parent == tmp_path / "cache" / "models"
    )
    os.utime(gguf, ns=(1, 1))
    assert converted_gguf_dir(gguf, tmp_path / "cache") != first  # a replaced file is converted again
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        hf_source(tmp_path / "missing.gguf", tmp_path / "cache")


def test_converted_smollm2_loads_from_the_cache(smollm2_dir, smollm2_gguf):
    assert hf_source(smollm2_gguf) == str(smollm2_dir) and (smollm2_dir / "config.json").is_file()
    model, tokenizer = load_causal_lm(smollm2_gguf, device="cpu")
    assert model.config.model_type == "llama" and not model.training
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )


def test_an_hf_directory_with_a_dtype(chat_model_dir):
    import torch

    model, tokenizer = load_causal_lm(chat_model_dir, device="cpu", dtype="bfloat16")
    assert (
        model.dtype == torch.bfloat16 and str(model.device) == "cpu" and tokenizer.eos_token == "<|im_end|>"
    )
