"""Settings: defaults < YAML < flags; every problem reported at once, with its key."""

from __future__ import annotations

import argparse

import pytest

from retriever_server.settings import Settings, add_settings_arguments, settings_from_args


def parse(argv):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


def test_yaml_then_flags(tmp_path):
    config = tmp_path / "retriever.yaml"
    config.write_text(
        "corpus: wiki.jsonl\ndense_index: e5_Flat.index\nport: 9000\nretriever: dense,bm25\n"
        "bm25_index: bm25\ngpus: [0, 1]\nbatching: false\n"
    )
    settings = parse(["--config", str(config), "--port", "9100", "--max-wait-ms", "5", "--gpus", "2,3"])
    assert (settings.corpus, settings.port, settings.max_wait_ms) == ("wiki.jsonl", 9100, 5.0)
    assert settings.retriever == ["dense", "bm25"] and settings.gpus == [2, 3] and settings.batching is False
    assert parse(["--config", str(config), "--batching"]).batching is True
    settings.validate()


def test_defaults_are_e5_and_safe():
    settings = Settings()
    assert (
        settings.encoder,
        settings.query_prefix,
        settings.passage_prefix,
        settings.pooling,
        settings.max_length,
    ) == ("intfloat/e5-base-v2", "query: ", "passage: ", "mean", 256)
    assert settings.host == "127.0.0.1" and settings.auth_token is None


def test_unknown_yaml_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("corpus: x\nnot_a_setting: 1\n")
    with pytest.raises(ValueError, match=r"unknown settings \['not_a_setting'\]"):
        parse(["--config", str(config)])


def test_validate_reports_every_problem():
    settings = Settings(
        retriever=["dense", "colbert"], max_topk=5, search_topk=10, cache_size=-1, port=0, fusion="sum"
    )
    with pytest.raises(ValueError) as error:
        settings.validate()
    message = str(error.value)
    for key in (
        "corpus:",
        "dense_index:",
        "retriever[1]: 'colbert': Input should be 'dense' or 'bm25'",
        "search_topk: 10 exceeds max_topk=5",
        "cache_size: -1: Input should be greater than or equal to 0",
        "port: 0: Input should be greater than or equal to 1",
        "fusion: 'sum'",
    ):
        assert key in message
    Settings(demo=True).validate()  # the demo needs nothing else


def test_the_shipped_example_config_is_valid():
    from pathlib import Path

    import retriever_server

    example = Path(retriever_server.__file__).parent / "retriever.example.yaml"
    settings = parse(["--config", str(example)])
    settings.validate()
    assert settings.gpus == [0, 1] and settings.dense_index.endswith("e5_Flat.index")


def test_squeezer_flags_and_their_checks(monkeypatch):
    settings = parse(
        [
            "--demo",
            "--squeezer",
            "openai",
            "--squeezer-url",
            "http://gpu-node:8001/v1",
            "--squeezer-model",
            "meta/llama-4-maverick-17b-128e-instruct",
            "--squeezer-max-tokens",
            "256",
            "--squeezer-context-tokens",
            "3000",
            "--squeezer-cache-db",
            "/tmp/s.sqlite",
            "--squeezer-api-key-env",
            "NVIDIA_API_KEY",
            "--squeeze-default",
        ]
    )
    assert (settings.squeezer, settings.squeezer_max_tokens, settings.squeezer_context_tokens) == (
        "openai",
        256,
        3000,
    )
    assert settings.squeeze_default is True and settings.squeezer_cache_db == "/tmp/s.sqlite"
    monkeypatch.delenv("NVIDIA_API_KEY", raising=False)
    with pytest.raises(ValueError, match="NVIDIA_API_KEY is not set"):
        settings.validate()
    monkeypatch.setenv("NVIDIA_API_KEY", "nvapi-x")
    settings.validate()
    defaults = Settings()
    assert (defaults.squeezer, defaults.squeezer_max_tokens, defaults.squeezer_cache_size) == (
        "none",
        512,
        4096,
    )
    bad = Settings(
        demo=True, squeezer="llama", squeezer_max_tokens=0, squeezer_retries=-1, squeezer_request_timeout_s=0
    )
    with pytest.raises(ValueError) as error:
        bad.validate()
    for key in (
        "squeezer: 'llama'",
        "squeezer_max_tokens: 0",
        "squeezer_retries: -1",
        "squeezer_request_timeout_s",
    ):
        assert key in str(error.value)
    with pytest.raises(ValueError, match="squeezer_model: required for squeezer=hf"):
        Settings(corpus="c", dense_index="d", squeezer="hf").validate()
    Settings(demo=True, squeezer="hf").validate()  # the demo squeezes with SmolLM2
    with pytest.raises(ValueError, match="extractive uses the dense retriever's encoder"):
        Settings(demo=True, squeezer="extractive", retriever=["bm25"]).validate()


def test_every_backend_name_is_registered():
    from retriever_server.settings import SQUEEZER_BACKENDS
    from retriever_server.squeezer import SQUEEZERS

    assert set(SQUEEZERS) == set(SQUEEZER_BACKENDS)


def test_types_are_strict_and_each_problem_names_key_value_and_limit(tmp_path):
    """A YAML value of the wrong type is reported, not coerced, and not a crash in a comparison."""
    config = tmp_path / "typed.yaml"
    config.write_text(
        "demo: true\nport: '8000'\nmax_wait_ms: .nan\nretriever: [dense, dense]\npooling: cls\n"
    )
    settings = parse(["--config", str(config), "--fusion", "max"])
    assert (settings.pooling, settings.fusion) == ("cls", "max")
    with pytest.raises(ValueError) as error:
        settings.validate()
    message = str(error.value)
    assert "port: '8000': Input should be a valid integer" in message
    assert "max_wait_ms: nan: Input should be a finite number" in message
    assert "retriever: ['dense', 'dense']: Value error, each retriever at most once" in message
    assert message.count("\n  ") == 3
