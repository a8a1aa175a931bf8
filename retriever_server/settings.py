"""Server settings: one typed home for every knob, from defaults < YAML file < command-line flags.

Every field is a YAML key of the same name and a `--kebab-case` flag of `serve`; the comment on each
field says its meaning, its unit and the value the papers used. Each field's type carries its
limits (pydantic's `PositiveInt`, a `Literal` of the allowed names, ...); `validate()` checks them
with pydantic, adds the checks that tie fields together, and reports every problem at once, naming
the key, the value and the limit. A `Settings` is a plain dataclass until then, so a partial one
(tests, `dataclasses.replace`) costs nothing to build.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    with_config,
)

TOKEN_ENV = "EXPANDSEARCH_RETRIEVER_TOKEN"
CACHE_ENV = "EXPANDSEARCH_CACHE"
RetrieverName = Literal["dense", "bm25"]
SqueezerName = Literal["none", "openai", "hf", "extractive"]  # retriever_server.squeezer.SQUEEZERS
RETRIEVERS: tuple[str, ...] = typing.get_args(RetrieverName)
SQUEEZER_BACKENDS: tuple[str, ...] = typing.get_args(SqueezerName)


def _distinct(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError("each retriever at most once")
    return names


RetrieverNames = Annotated[list[RetrieverName], Field(min_length=1), AfterValidator(_distinct)]
Port = Annotated[int, Field(ge=1, le=65535)]
NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # also milliseconds
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def default_cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or str(Path("~/.cache/expandsearch").expanduser())


def _help(text: str) -> dict:
    return {"help": text}


# strict: a port of "8000" or a batching of 1 is a mistake in the YAML, not a value to coerce
@with_config(ConfigDict(strict=True, revalidate_instances="always"))
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
    retriever: RetrieverNames = field(
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
    pooling: Literal["mean", "cls", "pooler"] = field(
        default="mean", metadata=_help("mean | cls | pooler (E5: mean)")
    )
    query_prefix: str = field(default="query: ", metadata=_help("prepended to queries (E5: 'query: ')"))
    passage_prefix: str = field(
        default="passage: ", metadata=_help("prepended to passages (E5: 'passage: ')")
    )
    max_length: PositiveInt = field(
        default=256, metadata=_help("encoder max tokens per text (Search-R1: 256)")
    )
    normalize: bool = field(default=True, metadata=_help("L2-normalise embeddings (E5: yes)"))
    device: str = field(default="auto", metadata=_help("encoder device: auto | cpu | cuda | cuda:N"))
    fp16: bool = field(default=True, metadata=_help("fp16 encoder on GPU (ignored on CPU)"))
    # --- faiss --------------------------------------------------------------------------------
    gpus: list[NonNegativeInt] = field(
        default_factory=list,
        metadata=_help("faiss GPU ids for the dense index, comma-separated (empty: CPU)"),
    )
    gpu_shard: bool = field(default=True, metadata=_help("shard the index rows across gpus (else replicate)"))
    gpu_fp16: bool = field(
        default=True, metadata=_help("store the index in fp16 on GPU (wiki-18 flat: ~32 GB)")
    )
    ef_search: PositiveInt = field(default=128, metadata=_help("HNSW efSearch (recall/speed trade-off)"))
    nprobe: PositiveInt = field(default=64, metadata=_help("IVF nprobe (recall/speed trade-off)"))
    torch_threads: NonNegativeInt = field(default=0, metadata=_help("torch intra-op threads (0: all cores)"))
    faiss_threads: NonNegativeInt = field(default=0, metadata=_help("faiss OpenMP threads (0: all cores)"))
    # --- serving --------------------------------------------------------------------------------
    host: str = field(default="127.0.0.1", metadata=_help("bind address (0.0.0.0 exposes it to the network)"))
    port: Port = field(default=8000, metadata=_help("TCP port (Search-R1 clients default to 8000)"))
    auth_token: str | None = field(
        default=None,
        metadata=_help(f"require 'Authorization: Bearer TOKEN' (also ${TOKEN_ENV}); /health stays open"),
    )
    batching: bool = field(default=True, metadata=_help("coalesce concurrent requests into one engine batch"))
    max_batch_queries: PositiveInt = field(default=256, metadata=_help("most queries per engine batch"))
    max_wait_ms: NonNegativeSeconds = field(
        default=2.0, metadata=_help("longest wait for more requests when the engine is idle (ms)")
    )
    cache_size: NonNegativeInt = field(
        default=65536, metadata=_help("LRU entries of (query, k, index) -> top-k (0: off)")
    )
    fusion: Literal["rrf", "max"] = field(
        default="rrf", metadata=_help("/search fusion of the variants: rrf | max")
    )
    rrf_k: PositiveInt = field(
        default=60, metadata=_help("reciprocal-rank-fusion constant (Cormack et al.: 60)")
    )
    retrieve_topk: PositiveInt = field(
        default=3, metadata=_help("/retrieve topk when the request has none (Search-R1: 3)")
    )
    search_topk: PositiveInt = field(
        default=10, metadata=_help("/search topk when the request has none (ExpandSearch: 10)")
    )
    max_queries: PositiveInt = field(default=64, metadata=_help("most queries per request"))
    max_topk: PositiveInt = field(default=100, metadata=_help("largest topk a request may ask for"))
    max_query_chars: PositiveInt = field(
        default=2048, metadata=_help("longest query or question, in characters")
    )
    max_body_bytes: PositiveInt = field(default=1 << 20, metadata=_help("largest request body, in bytes"))
    graceful_timeout_s: NonNegativeSeconds = field(
        default=30.0, metadata=_help("on shutdown, wait this long for in-flight requests")
    )
    # --- squeezer (ExpandSearch: Llama-4-Maverick-17B on NVIDIA NIM, temperature 0, 512 tokens) -------------
    squeezer: SqueezerName = field(
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
    squeezer_max_tokens: PositiveInt = field(
        default=512,
        metadata=_help("longest summary in tokens (the paper: 512); extractive: its token budget"),
    )
    squeezer_context_tokens: PositiveInt = field(
        default=4096,
        metadata=_help(
            "passages given to the squeezer, in tokens, cut at passage boundaries (3 variants x topk 10 of wiki-18: ~2-4k)"
        ),
    )
    squeezer_concurrency: PositiveInt = field(
        default=64, metadata=_help("openai: most squeezer requests in flight")
    )
    squeezer_request_timeout_s: PositiveSeconds = field(
        default=20.0,
        metadata=_help("openai: timeout of one attempt, in seconds (the whole squeeze: squeeze_timeout_s)"),
    )
    squeezer_retries: NonNegativeInt = field(
        default=3,
        metadata=_help(
            "openai: retries on 408, 409, 429, 5xx, timeouts and connection errors (the openai client's "
            "backoff: 0.5 s doubling to 8 s, with jitter; a Retry-After is honoured)"
        ),
    )
    squeezer_batch_size: PositiveInt = field(
        default=16, metadata=_help("hf: most requests per generate batch")
    )
    squeezer_batch_wait_ms: NonNegativeSeconds = field(
        default=5.0, metadata=_help("hf: longest wait for more requests when the model is idle (ms)")
    )
    squeezer_device: str = field(default="auto", metadata=_help("hf: auto | cpu | cuda | cuda:N"))
    squeezer_cache_size: NonNegativeInt = field(
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
    squeeze_timeout_s: NonNegativeSeconds = field(
        default=30.0,
        metadata=_help(
            "a whole squeeze (retries included) slower than this degrades to passages, in seconds"
        ),
    )

    def resolved_token(self) -> str | None:
        return self.auth_token or os.environ.get(TOKEN_ENV) or None

    def validate(self) -> None:
        """Raise ValueError listing every problem, each with its key, its value and the limit."""
        try:
            _adapter().validate_python(self)
            errors = []
        except ValidationError as error:
            errors = error.errors(include_url=False)
        problems = [_problem(error) for error in errors]
        problems += self._relation_problems(invalid={error["loc"][0] for error in errors})
        if problems:
            raise ValueError("invalid server settings:\n  " + "\n  ".join(problems))

    def _relation_problems(self, invalid: set) -> list[str]:
        """What no single field's type can say: required companions, limits between fields."""
        problems = []
        retrievers = self.retriever if isinstance(self.retriever, list) else []
        if not self.demo:
            if not self.corpus:
                problems.append(
                    "corpus: required (a wiki-18-style JSONL or a converted directory), or use --demo"
                )
            if "dense" in retrievers and not self.dense_index:
                problems.append("dense_index: required to serve the dense retriever")
            if "bm25" in retrievers and not self.bm25_index:
                problems.append("bm25_index: required to serve the bm25 retriever")
        if "max_topk" not in invalid:
            for name in ("retrieve_topk", "search_topk"):
                if name not in invalid and getattr(self, name) > self.max_topk:
                    problems.append(f"{name}: {getattr(self, name)} exceeds max_topk={self.max_topk}")
        if self.squeezer == "hf" and not self.squeezer_model and not self.demo:
            problems.append(
                "squeezer_model: required for squeezer=hf (an HF directory or name, a .gguf file, or smollm2)"
            )
        if self.squeezer == "extractive" and "dense" not in retrievers:
            problems.append(
                "squeezer: extractive uses the dense retriever's encoder; serve --retriever dense[,bm25]"
            )
        key_env = self.squeezer_api_key_env
        if self.squeezer == "openai" and isinstance(key_env, str) and key_env and not os.environ.get(key_env):
            problems.append(f"squeezer_api_key_env: the environment variable {key_env} is not set")
        return problems


@functools.cache
def _adapter() -> TypeAdapter:
    """Built on first use: the schema of ~60 fields costs more than the rest of `validate`."""
    return TypeAdapter(Settings)


def _problem(error: dict) -> str:
    """`squeezer_max_tokens: 0: Input should be greater than 0` from one of pydantic's errors."""
    key, *where = error["loc"]
    return f"{key}{''.join(f'[{part}]' for part in where)}: {error['input']!r}: {error['msg']}"


def _base_type(tp) -> type:
    """int for `int`, str for `str | None` and `Literal["a", "b"]`, list for `list[int]`."""
    if isinstance(tp, types.UnionType):
        tp = next(arg for arg in typing.get_args(tp) if arg is not type(None))
    if typing.get_origin(tp) is Literal:
        return type(typing.get_args(tp)[0])
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
            item = _base_type(typing.get_args(hints[spec.name])[0])
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
