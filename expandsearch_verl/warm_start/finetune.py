"""The format warm start: verl's SFT trainer, on the CPU backend, over the builder's examples; cached.

    python -m expandsearch_verl.warm_start.finetune EXAMPLES.parquet [--policy-model smollm2]
        [--steps 32] [--lr 1.5e-4] [--batch-size 4] [--run-dir DIR] [--cache-dir DIR]

prints the Hugging Face directory of the fine-tuned policy. The examples are the agent loop's own
token ids with its loss mask (`warm_start.build`), fed unchanged by `TokenizedSFTDataset`, so the
loss falls on the policy's tokens only and the observations are masked exactly as in RL. The run is
`python -m expandsearch_verl.cpu.sft` (verl's `SFTTrainer`) in a child process; its last step saves
an HF directory (verl's `hf_model` checkpoint content, no merger needed), which is kept in the cache
under a key of the examples' bytes, the base model, the settings and `FINETUNE_VERSION`, as the
GGUF conversion is: a second run with the same inputs trains nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from expandsearch_verl.warm_start import dataset

FINETUNE_VERSION = 1  # part of the cache key: bump it when the training changes
PRECISIONS = ("bf16", "fp32")


def fastest_precision() -> str:
    """bf16 compute where the CPU has bf16 instructions (AVX512-BF16: a warm-start step ~1.4x faster
    than fp32 on 2 cores), fp32 elsewhere (emulated bf16 is slower). Unlike RL, SFT compares no
    log-probs across engines, so bf16 costs it nothing; the weights stay fp32."""
    import torch

    return "bf16" if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() else "fp32"


@dataclass(frozen=True)
class FinetuneSettings:
    """32 updates of 4 examples: as many examples as 16 of 8 (5.5 min on 2 quiet cores in bf16), and
    every test trajectory then searched with two or more distinct variants (11 of 14 after 16 of 8)."""

    steps: int = 32
    lr: float = 1.5e-4
    batch_size: int = 4
    warmup_ratio: float = 0.1
    max_length: int = 1536  # prompt (~250) + response budget; an example above it is refused, named
    seed: int = 1
    precision: str = dataclasses.field(default_factory=fastest_precision)  # compute dtype

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"warm start {name}={getattr(self, name)}: must be >= 1")
        if not 0 < self.lr < 1:
            raise ValueError(f"warm start lr={self.lr}: must be in (0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warm start warmup_ratio={self.warmup_ratio}: must be in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"warm start precision={self.precision!r}: must be one of {PRECISIONS}")


def cache_key(examples: Path, model_dir: str, settings: FinetuneSettings) -> str:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(examples.read_bytes())
    digest.update(f"|{Path(model_dir).resolve()}|v{FINETUNE_VERSION}|".encode())
    digest.update(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
    return digest.hexdigest()


def cached_dir(examples: Path, model_dir: str, settings: FinetuneSettings, cache_dir: Path) -> Path:
    """Where the fine-tuned HF directory for these inputs lives (present or not)."""
    key = cache_key(examples, model_dir, settings)
    return cache_dir.expanduser() / "warm_start" / f"{Path(model_dir).name}-{key}"


def sft_overrides(examples: Path, model_dir: str, run_dir: Path, settings: FinetuneSettings) -> list[str]:
    """verl's SFT config for this run (after `expandsearch_verl.cpu.sft.OVERRIDES`)."""
    return [
        f"data.train_files={examples}",
        f"data.custom_cls.path={dataset.__file__}",
        "data.custom_cls.name=TokenizedSFTDataset",
        f"data.train_batch_size={settings.batch_size}",
        f"data.micro_batch_size_per_gpu={settings.batch_size}",
        "data.use_dynamic_bsz=false",
        f"data.max_length={settings.max_length}",
        f"model.path={model_dir}",
        "model.enable_gradient_checkpointing=false",  # 135M fits; recomputing costs a third more time
        f"++engine.mixed_precision={{param_dtype:{settings.precision},reduce_dtype:fp32,buffer_dtype:fp32}}",
        f"optim.lr={settings.lr}",
        f"optim.lr_warmup_steps_ratio={settings.warmup_ratio}",
        "optim.lr_scheduler_type=cosine",
        f"engine.seed={settings.seed}",
        f"trainer.seed={settings.seed}",
        f"trainer.total_training_steps={settings.steps}",
        "trainer.total_epochs=1000",  # the step count decides
        "trainer.save_freq=-1",  # the last step saves
        "trainer.resume_mode=disable",
        "trainer.logger=[console]",
        "trainer.project_name=expandsearch",
        "trainer.experiment_name=warm_start",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        "checkpoint.save_contents=[hf_model]",  # the policy as an HF directory; no optimizer state
    ]


def finetune(
    examples: Path,
    model_dir: str,
    settings: FinetuneSettings,
    cache_dir: Path,
    run_dir: Path,
    log=None,
) -> Path:
    """The fine-tuned policy's HF directory: from the cache, else trained now (verl's output to `log`)."""
    target = cached_dir(examples, model_dir, settings, cache_dir)
    if (target / "config.json").is_file():
        return target
    dataset.TokenizedSFTDataset(str(examples), None, {"max_length": settings.max_length})  # refuse early
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "expandsearch_verl.cpu.sft",
        *sft_overrides(examples, model_dir, run_dir, settings),
    ]
    status = subprocess.run(
        command, stdout=log, stderr=subprocess.STDOUT if log else None, env=os.environ.copy()
    )
    saved = run_dir / "checkpoints" / f"global_step_{settings.steps}" / "huggingface"
    if status.returncode != 0 or not (saved / "config.json").is_file():
        where = f"; see {log.name}" if log is not None and hasattr(log, "name") else ""
        raise RuntimeError(f"verl's SFT trainer failed (exit status {status.returncode}){where}")
    publish(saved, target, base=Path(model_dir))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return target


def publish(saved: Path, target: Path, base: Path) -> None:
    """`saved` (an HF directory verl wrote) copied to the cache entry `target` atomically, with the base
    model's generation config (its end token, `<|im_end|>` for SmolLM2) beside the weights."""
    source = base / "generation_config.json"
    if source.is_file():
        shutil.copyfile(source, saved / "generation_config.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(saved, tmp)
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    from retriever_server.models import hf_source
    from retriever_server.settings import default_cache_dir

    defaults = FinetuneSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "examples", type=Path, help="warm_start.parquet from expandsearch_verl.warm_start.build"
    )
    parser.add_argument(
        "--policy-model", default="smollm2", help="the base policy: smollm2 or an HF directory"
    )
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-length", type=int, default=defaults.max_length)
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision, help="compute dtype")
    parser.add_argument("--run-dir", type=Path, default=Path("outputs/warm_start"))
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="default: $EXPANDSEARCH_CACHE or ~/.cache/expandsearch"
    )
    args = parser.parse_args(argv)
    try:
        settings = FinetuneSettings(
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            max_length=args.max_length,
            precision=args.precision,
        )
        model_dir = hf_source(args.policy_model)
        path = finetune(
            args.examples, model_dir, settings, args.cache_dir or Path(default_cache_dir()), args.run_dir
        )
    except (ValueError, RuntimeError, OSError) as error:
        print(f"warm start: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
