"""Server settings: one typed home for every knob, from defaults < YAML file < command-line flags.

Every field is a YAML key of the same name and a `--kebab-case` flag of `serve`; the comment on each
field says its meaning, its unit and the value the papers used. `validate()` reports every problem
at once, naming the key and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "EXPANDSEARCH_RETRIEVER_TOKEN"
CACHE_ENV = "EXPANDSEARCH_CACHE"
RETRIEVERS = ("dense", "bm25")
SQUEEZER_BACKENDS = ("none", "openai", "hf", "extractive")  # retriever_server.squeezer.SQUEEZERS


def default_cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or str(Path("~/.cache/expandsearch").expanduser())


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class Settings:
    # --- data -------------------------------------------------------------------------------
    corpus: str | None = field(
        default=None,
        metadata=_help(
            "wiki-18-style JSONL(.gz) or a converted corpus directory (converted once into cache_dir)"
        ),
    )
    dense_index: str | None = field(
        default=None,
        metadata=_help(
            "index directory from build-index, or a bare faiss file such as Search-R1's e5_Flat.index"
        ),
    )
    bm25_index: str | None = field(default=None, metadata=_help("bm25 index directory from build-index"))
    retriever: list[str] = field(
        default_factory=lambda: ["dense"],
        metadata=_help(
            "retrievers to serve, comma-separated (dense,bm25); the first is the default, a request may pick another"
        ),
    )
    cache_dir: str = field(
        default_factory=default_cache_dir,
        metadata=_help(f"converted corpora and demo indexes (${CACHE_ENV}, else ~/.cache/expandsearch)"),
    )
    demo: bool = field(
        default=False,
        metadata=_help(
            "serve the shipped sample corpus with the offline MiniLM encoder (dense + bm25, built on first use)"
        ),
    )
    # --- encoder (E5 defaults, as Search-R1 and ExpandSearch serve wiki-18) -----------------
    encoder: str = field(default="intfloat/e5-base-v2", metadata=_help("HF encoder name or local directory"))
    pooling: str = field(default="mean", metadata=_help("mean | cls | pooler (E5: mean)"))
    query_prefix: str = field(default="query: ", metadata=_help("prepended to queries (E5: 'query: ')"))
    passage_prefix: str = field(
        default="passage: ", metadata=_help("prepended to passages (E5: 'passage: ')")
    )
    max_length: int = field(default=256, metadata=_help("encoder max tokens per text (Search-R1: 256)"))
    normalize: bool = field(default=True, metadata=_help("L2-normalise embeddings (E5: yes)"))
    device: str = field(default="auto", metadata=_help("encoder device: auto | cpu | cuda | cuda:N"))
    fp16: bool = field(default=True, metadata=_help("fp16 encoder on GPU (ignored on CPU)"))
    # --- faiss --------------------------------------------------------------------------------
    gpus: list[int] = field(
        default_factory=list,
        metadata=_help("faiss GPU ids for the dense index, comma-separated (empty: CPU)"),
    )
    gpu_shard: bool = field(default=True, metadata=_help("shard the index rows across gpus (else replicate)"))
    gpu_fp16: bool = field(
        default=True, metadata=_help("store the index in fp16 on GPU (wiki-18 flat: ~32 GB)")
    )
    ef_search: int = field(default=128, metadata=_help("HNSW efSearch (recall/speed trade-off)"))
    nprobe: int = field(default=64, metadata=_help("IVF nprobe (recall/speed trade-off)"))
    torch_threads: int = field(default=0, metadata=_help("torch intra-op threads (0: all cores)"))
    faiss_threads: int = field(default=0, metadata=_help("faiss OpenMP threads (0: all cores)"))
    # --- serving --------------------------------------------------------------------------------
    host: str = field(default="127.0.0.1", metadata=_help("bind address (0.0.0.0 exposes it to the network)"))
    port: int = field(default=8000, metadata=_help("TCP port (Search-R1 clients default to 8000)"))
    auth_token: str | None = field(
        default=None,
        metadata=_help(f"require 'Authorization: Bearer TOKEN' (also ${TOKEN_ENV}); /health stays open"),
    )
    batching: bool = field(default=True, metadata=_help("coalesce concurrent requests into one engine batch"))
    max_batch_queries: int = field(default=256, metadata=_help("most queries per engine batch"))
    max_wait_ms: float = field(
        default=2.0, metadata=_help("longest wait for more requests when the engine is idle (ms)")
    )
    cache_size: int = field(
        default=65536, metadata=_help("LRU entries of (query, k, index) -> top-k (0: off)")
    )
    fusion: str = field(default="rrf", metadata=_help("/search fusion of the variants: rrf | max"))
    rrf_k: int = field(default=60, metadata=_help("reciprocal-rank-fusion constant (Cormack et al.: 60)"))
    retrieve_topk: int = field(
        default=3, metadata=_help("/retrieve topk when the request has none (Search-R1: 3)")
    )
    search_topk: int = field(
        default=10, metadata=_help("/search topk when the request has none (ExpandSearch: 10)")
    )
    max_queries: int = field(default=64, metadata=_help("most queries per request"))
    max_topk: int = field(default=100, metadata=_help("largest topk a request may ask for"))
    max_query_chars: int = field(default=2048, metadata=_help("longest query or question, in characters"))
    max_body_bytes: int = field(default=1 << 20, metadata=_help("largest request body, in bytes"))
    graceful_timeout_s: float = field(
        default=30.0, metadata=_help("on shutdown, wait this long for in-flight requests")
    )
    # --- squeezer (ExpandSearch: Llama-4-Maverick-17B on NVIDIA NIM, temperature 0, 512 tokens) -------------
    squeezer: str = field(
        default="none",
        metadata=_help(
            "squeezer backend: none (the fused passages) | openai (vLLM, SGLang, NIM) | hf (local model) | extractive"
        ),
    )
    squeezer_model: str | None = field(
        default=None,
        metadata=_help(
            "openai: the served model name (default meta-llama/Llama-3.1-8B-Instruct); hf: an HF directory or name, "
            "a .gguf file, or smollm2 (the offline demo model; the default with --demo)"
        ),
    )
    squeezer_url: str = field(
        default="http://127.0.0.1:8001/v1",
        metadata=_help(
            "openai: base URL of the chat-completions server (NIM: https://integrate.api.nvidia.com/v1)"
        ),
    )
    squeezer_api_key_env: str | None = field(
        default=None,
        metadata=_help("openai: NAME of the environment variable holding the API key (NIM: NVIDIA_API_KEY)"),
    )
    squeezer_tokenizer: str | None = field(
        default=None,
        metadata=_help(
            "openai: HF tokenizer that counts context tokens (default: an estimate of 4 bytes per token)"
        ),
    )
    squeezer_prompt: str | None = field(
        default=None,
        metadata=_help("prompt YAML (version, system, user); default: retriever_server/squeezer/prompt.yaml"),
    )
    squeezer_max_tokens: int = field(
        default=512,
        metadata=_help("longest summary in tokens (the paper: 512); extractive: its token budget"),
    )
    squeezer_context_tokens: int = field(
        default=4096,
        metadata=_help(
            "passages given to the squeezer, in tokens, cut at passage boundaries (3 variants x topk 10 of wiki-18: ~2-4k)"
        ),
    )
    squeezer_concurrency: int = field(default=64, metadata=_help("openai: most squeezer requests in flight"))
    squeezer_request_timeout_s: float = field(
        default=20.0,
        metadata=_help("openai: timeout of one attempt, in seconds (the whole squeeze: squeeze_timeout_s)"),
    )
    squeezer_retries: int = field(
        default=3,
        metadata=_help(
            "openai: retries on 429, 5xx, timeouts and connection errors (exponential backoff with jitter)"
        ),
    )
    squeezer_backoff_s: float = field(
        default=0.5, metadata=_help("openai: first retry delay in seconds (doubles, max 8)")
    )
    squeezer_batch_size: int = field(default=16, metadata=_help("hf: most requests per generate batch"))
    squeezer_batch_wait_ms: float = field(
        default=5.0, metadata=_help("hf: longest wait for more requests when the model is idle (ms)")
    )
    squeezer_device: str = field(default="auto", metadata=_help("hf: auto | cpu | cuda | cuda:N"))
    squeezer_cache_size: int = field(
        default=4096, metadata=_help("squeeze summaries kept in memory (0: off)")
    )
    squeezer_cache_db: str | None = field(
        default=None,
        metadata=_help(
            "sqlite file that keeps summaries across restarts (repeated validation runs do not pay twice)"
        ),
    )
    squeeze_default: bool = field(
        default=False, metadata=_help("/search squeezes when the request says null")
    )
    squeeze_timeout_s: float = field(
        default=30.0,
        metadata=_help(
            "a whole squeeze (retries included) slower than this degrades to passages, in seconds"
        ),
    )

    def resolved_token(self) -> str | None:
        return self.auth_token or os.environ.get(TOKEN_ENV) or None

    def validate(self) -> None:
        """Raise ValueError listing every problem, each with its key and the fix."""
        problems = []
        if not self.demo:
            if not self.corpus:
                problems.append(
                    "corpus: required (a wiki-18-style JSONL or a converted directory), or use --demo"
                )
            for name in self.retriever:
                if name == "dense" and not self.dense_index:
                    problems.append("dense_index: required to serve the dense retriever")
                if name == "bm25" and not self.bm25_index:
                    problems.append("bm25_index: required to serve the bm25 retriever")
        unknown = [name for name in self.retriever if name not in RETRIEVERS]
        if unknown or not self.retriever or len(set(self.retriever)) != len(self.retriever):
            problems.append(f"retriever: {self.retriever} must be distinct names from {list(RETRIEVERS)}")
        if self.pooling not in ("mean", "cls", "pooler"):
            problems.append(f"pooling: {self.pooling!r} must be mean, cls or pooler")
        if self.fusion not in ("rrf", "max"):
            problems.append(f"fusion: {self.fusion!r} must be rrf or max")
        problems += self._squeezer_problems()
        positive = (
            "max_length",
            "ef_search",
            "nprobe",
            "max_batch_queries",
            "retrieve_topk",
            "search_topk",
            "max_queries",
            "max_topk",
            "max_query_chars",
            "max_body_bytes",
            "rrf_k",
        )
        problems += self._below(positive, 1)
        non_negative = (
            "cache_size",
            "torch_threads",
            "faiss_threads",
            "max_wait_ms",
            "squeeze_timeout_s",
            "graceful_timeout_s",
        )
        problems += self._below(non_negative, 0)
        for name in ("retrieve_topk", "search_topk"):
            if getattr(self, name) > self.max_topk:
                problems.append(f"{name}: {getattr(self, name)} exceeds max_topk={self.max_topk}")
        if not 0 < self.port < 65536:
            problems.append(f"port: {self.port} must be in 1..65535")
        if problems:
            raise ValueError("invalid server settings:\n  " + "\n  ".join(problems))

    def _below(self, names: tuple[str, ...], floor: int) -> list[str]:
        """One message for each setting in `names` under `floor`."""
        return [
            f"{name}: {getattr(self, name)} must be >= {floor}"
            for name in names
            if getattr(self, name) < floor
        ]

    def _squeezer_problems(self) -> list[str]:
        problems = []
        if self.squeezer not in SQUEEZER_BACKENDS:
            problems.append(f"squeezer: {self.squeezer!r} must be one of {list(SQUEEZER_BACKENDS)}")
        if self.squeezer == "hf" and not self.squeezer_model and not self.demo:
            problems.append(
                "squeezer_model: required for squeezer=hf (an HF directory or name, a .gguf file, or smollm2)"
            )
        if self.squeezer == "extractive" and "dense" not in self.retriever:
            problems.append(
                "squeezer: extractive uses the dense retriever's encoder; serve --retriever dense[,bm25]"
            )
        if (
            self.squeezer == "openai"
            and self.squeezer_api_key_env
            and not os.environ.get(self.squeezer_api_key_env)
        ):
            problems.append(
                f"squeezer_api_key_env: the environment variable {self.squeezer_api_key_env} is not set"
            )
        positive = (
            "squeezer_max_tokens",
            "squeezer_context_tokens",
            "squeezer_concurrency",
            "squeezer_batch_size",
        )
        problems += self._below(positive, 1)
        non_negative = (
            "squeezer_retries",
            "squeezer_backoff_s",
            "squeezer_batch_wait_ms",
            "squeezer_cache_size",
        )
        problems += self._below(non_negative, 0)
        if self.squeezer_request_timeout_s <= 0:
            problems.append(f"squeezer_request_timeout_s: {self.squeezer_request_timeout_s} must be > 0")
        return problems


def _base_type(tp) -> type:
    """int for `int`, str for `str | None`, list for `list[int]`."""
    if isinstance(tp, types.UnionType):
        return next(arg for arg in typing.get_args(tp) if arg is not type(None))
    return typing.get_origin(tp) or tp


def _field_types() -> dict[str, object]:
    return typing.get_type_hints(Settings)


def _list_parser(item: type):
    def parse(text: str) -> list:
        return [item(part.strip()) for part in text.split(",") if part.strip()]

    return parse


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--kebab-case` flag per field; unset flags stay None so the YAML value (or default) wins."""
    parser.add_argument("--config", help="YAML file of settings (keys as the flags, with underscores)")
    hints = _field_types()
    for spec in dataclasses.fields(Settings):
        flag = "--" + spec.name.replace("_", "-")
        base = _base_type(hints[spec.name])
        text = spec.metadata.get("help", "")
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif base is list:
            item = typing.get_args(hints[spec.name])[0]
            parser.add_argument(flag, type=_list_parser(item), default=None, help=text)
        else:
            parser.add_argument(flag, type=base, default=None, help=text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Defaults, then the YAML file of --config, then the flags given on the command line."""
    import yaml

    values: dict = {}
    if getattr(args, "config", None):
        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping of setting names to values")
        known = {spec.name for spec in dataclasses.fields(Settings)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ValueError(f"{args.config}: unknown settings {unknown}; see `serve --help`")
        values.update(loaded)
    for spec in dataclasses.fields(Settings):
        flag_value = getattr(args, spec.name, None)
        if flag_value is not None:
            values[spec.name] = flag_value
    if isinstance(values.get("retriever"), str):
        values["retriever"] = _list_parser(str)(values["retriever"])
    return Settings(**values)
