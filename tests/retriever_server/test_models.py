"""Model loading: the offline models, GGUF conversion cached by file identity, HF directories."""

from __future__ import annotations

import os

import pytest

from retriever_server import models
from retriever_server.models import (
    align_special_tokens,
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


def test_the_conversion_is_keyed_by_the_files_identity_and_the_conversion_version(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    first = converted_gguf_dir(gguf, tmp_path / "cache")
    assert (
        first == converted_gguf_dir(gguf, tmp_path / "cache")
        and first.parent == tmp_path / "cache" / "models"
    )
    os.utime(gguf, ns=(1, 1))
    second = converted_gguf_dir(gguf, tmp_path / "cache")
    assert second != first  # a replaced file is converted again
    monkeypatch.setattr(models, "CONVERSION_VERSION", models.CONVERSION_VERSION + 1)
    assert converted_gguf_dir(gguf, tmp_path / "cache") != second  # so is one an older conversion wrote
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        hf_source(tmp_path / "missing.gguf", tmp_path / "cache")


def test_converted_smollm2_loads_from_the_cache(smollm2_dir, smollm2_gguf):
    assert hf_source(smollm2_gguf) == str(smollm2_dir) and (smollm2_dir / "config.json").is_file()
    model, tokenizer = load_causal_lm(smollm2_gguf, device="cpu")
    assert model.config.model_type == "llama" and not model.training
    # the GGUF's tokenizer named <|im_start|> as its end token; the conversion gives it the model's
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == 2
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )


def test_an_hf_directory_with_a_dtype(chat_model_dir):
    import torch

    model, tokenizer = load_causal_lm(chat_model_dir, device="cpu", dtype="bfloat16")
    assert (
        model.dtype == torch.bfloat16 and str(model.device) == "cpu" and tokenizer.eos_token == "<|im_end|>"
    )


def test_the_tokenizer_is_made_to_end_and_pad_as_the_model_generates(chat_model_dir):
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_start|>", None  # what the GGUF reader gave SmolLM2
    end, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    align_special_tokens(tokenizer, GenerationConfig(eos_token_id=[end], pad_token_id=pad))
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    align_special_tokens(tokenizer, GenerationConfig(eos_token_id=None, pad_token_id=end))
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")  # a pad is kept
