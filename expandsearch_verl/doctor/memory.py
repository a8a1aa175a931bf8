"""GPU memory: what every GPU of the node holds during the run, and the logits of each forward pass.

verl's hybrid engine puts the rollout engine and the FSDP models on the same GPUs; the retriever's
index and a local squeezer may sit there too. What a training GPU holds, in GiB (2^30 bytes):

  while the rollout runs  rollout.gpu_memory_utilization x card (vLLM and SGLang claim that share at
                          start, weights and KV cache, and refuse to start when it is not free)
                        + FSDP states: 16 bytes per parameter of the actor and of the critic (fp32
                          parameters, gradients, Adam's two moments), divided over the training GPUs
                        + the CUDA contexts of verl's processes there (actor/rollout, critic, engine)
                        + whatever else runs there: an index shard (index / its GPUs) with faiss's
                          scratch, the encoder (the retriever's first GPU), a local squeezer's share
  while the model trains  the same without the rollout's share (verl puts the engine to sleep), plus
                          the logits of the largest forward pass

The logits of one forward are tokens x vocabulary x 2 bytes (bf16), held `LOGIT_COPIES` times: the
log-prob passes also compute the entropy verl logs (a softmax and its product with the logits), the
update holds the logits' gradient. Without dynamic batching a forward holds up to micro-batch x
(prompt + response) tokens; with it, the pass's `*_max_token_len_per_gpu`. The figures are estimates
that err high. On the GPU node the memory other processes hold on each training GPU is measured
(`torch.cuda.mem_get_info`) instead of estimated.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

from expandsearch_verl.doctor.context import CPU_RUN, Preflight
from expandsearch_verl.doctor.report import CheckResult, failed, passed, skipped, warned

GIB = 1024**3
CARD_GIB = 79.2  # an "80 GB" A100 or H100, as torch reports its memory
FAISS_SCRATCH_GIB = 1.5  # faiss StandardGpuResources' temporary memory: at most 1.5 GiB per GPU
ENCODER_GIB = 0.3  # E5-base in fp16 and its activations, on the retriever's first GPU
CONTEXT_GIB = 0.5  # one process's CUDA context on one GPU
TRAINER_PROCESSES = 3  # per training GPU: the actor/rollout worker, the critic worker, the engine server
REFERENCE_BYTES_PER_PARAM = 2  # the reference model: bf16 weights, nothing else
LOGIT_BYTES = 2  # bf16
LOGIT_COPIES = {"old-log-prob": 4, "reference": 4, "update": 3}
LAYOUT_DOC = "docs/gpu-layout.md"


@dataclass(frozen=True)
class GpuLoad:
    """What one GPU holds apart from the rollout engine's share, by owner, in GiB."""

    gpu: int
    trains: bool  # a training GPU: the rollout engine claims its share here too
    parts: dict[str, float]

    def rollout_total(self, rollout_gib: float) -> float:
        return sum(self.parts.values()) + (rollout_gib if self.trains else 0.0)

    def spelled(self, rollout_gib: float) -> str:
        parts = ({"rollout": rollout_gib} if self.trains else {}) | self.parts
        return " + ".join(f"{owner} {gib:.1f}" for owner, gib in parts.items() if gib)


def check_gpu_memory(ctx: Preflight) -> list[CheckResult]:
    """Every GPU the run uses on this node holds its processes while the rollout runs."""
    name = "gpu-memory"
    if ctx.on_cpu:
        return [skipped(name, CPU_RUN)]
    size = _model_size(str(ctx.select("actor_rollout_ref.model.path")))
    if size is None:
        return [skipped(name, "the actor's config.json is not readable here (see the model check)")]
    card, loads = plan(ctx, size[0])
    rollout_gib = _rollout_gib(ctx, card)
    over = [load for load in loads if load.rollout_total(rollout_gib) > card]
    if over:
        fullest = max(over, key=lambda load: load.rollout_total(rollout_gib))
        return [
            failed(
                name,
                f"does not fit while the rollout runs, {_arithmetic(fullest, rollout_gib, card)}",
                _fitting_layout(ctx, card, fullest),
            )
        ]
    fullest = max((load for load in loads if load.trains), key=lambda load: load.rollout_total(rollout_gib))
    rest = "".join(f"; GPU {load.gpu}: {load.spelled(rollout_gib)}" for load in loads if not load.trains)
    return [passed(name, f"while the rollout runs, {_arithmetic(fullest, rollout_gib, card)}{rest}")]


def check_logits(ctx: Preflight) -> list[CheckResult]:
    """The logits of each actor forward pass (vocabulary-wide) against what the GPU has left for them."""
    name = "logits"
    if ctx.on_cpu:
        return [skipped(name, CPU_RUN)]
    size = _model_size(str(ctx.select("actor_rollout_ref.model.path")))
    if size is None:
        return [skipped(name, "the actor's config.json is not readable here (see the model check)")]
    params, vocab = size
    card, loads = plan(ctx, params)
    held = max(sum(load.parts.values()) for load in loads if load.trains)
    room = card - held
    if room <= 0:
        return [
            skipped(name, f"the training GPUs are full before any logits ({held:.1f} GiB; see gpu-memory)")
        ]
    longest = ctx.select("data.max_prompt_length") + ctx.select("data.max_response_length")
    results, peaks = [], []
    for pass_name, section, dynamic, budget, micro in _passes(ctx):
        dynamic_on = bool(ctx.select(f"{section}.{dynamic}", False))
        tokens = (
            ctx.select(f"{section}.{budget}") if dynamic_on else ctx.select(f"{section}.{micro}", 1) * longest
        )
        if dynamic_on and tokens < longest:
            results.append(
                failed(
                    name,
                    f"{section}.{budget}={tokens} < prompt + response = {longest} (verl asserts it holds a whole sequence)",
                    f"{section}.{budget}={longest}",
                )
            )
            continue
        peak = tokens * vocab * LOGIT_BYTES * LOGIT_COPIES[pass_name] / GIB
        peaks.append(f"{pass_name} {tokens:,} tokens {peak:.1f}")
        if peak > room / 2:
            fits = _tokens_within(room / 2, vocab, LOGIT_COPIES[pass_name], longest)
            detail = (
                f"{pass_name}: {tokens:,} tokens x {vocab:,} vocabulary x {LOGIT_BYTES * LOGIT_COPIES[pass_name]} B "
                f"= {peak:.1f} GiB of logits in one forward; {room:.1f} GiB are left after FSDP and the GPU's other processes"
            )
            fix = _dynamic_fix(section, budget, fits)
            results.append(failed(name, detail, fix) if peak > room else warned(name, detail, fix))
    if results:
        return results
    return [passed(name, f"logits per forward (GiB): {', '.join(peaks)}; {room:.1f} GiB left for them")]


def plan(ctx: Preflight, params: int) -> tuple[float, list[GpuLoad]]:
    """The card's memory and each GPU's load apart from the rollout's share (measured where visible)."""
    layout = ctx.layout
    trainers = train_gpus(ctx)
    measured = measure_gpus()
    card = layout.card_gib or (min(total for total, _ in measured) if measured else CARD_GIB)
    fsdp = _fsdp_gib(ctx, params, len(trainers))
    index_shard = layout.index_gib / len(layout.retriever_gpus) if layout.retriever_gpus else 0.0
    loads = []
    for gpu in sorted(set(trainers) | set(layout.retriever_gpus) | set(layout.squeezer_gpus)):
        parts: dict[str, float] = {}
        if gpu in trainers:
            parts |= {"FSDP": fsdp, "trainer contexts": TRAINER_PROCESSES * CONTEXT_GIB}
        if gpu in layout.retriever_gpus:
            parts["index"] = index_shard + FAISS_SCRATCH_GIB + CONTEXT_GIB
            if gpu == layout.retriever_gpus[0]:
                parts["encoder"] = ENCODER_GIB
        if gpu in layout.squeezer_gpus:
            parts["squeezer"] = layout.squeezer_memory_fraction * card + CONTEXT_GIB
        if measured and len(measured) == len(trainers) and gpu in trainers:
            others = max(0.0, measured[trainers.index(gpu)][1] - CONTEXT_GIB)  # less the doctor's own context
            parts = {key: parts[key] for key in ("FSDP", "trainer contexts")} | {
                "measured other processes": others
            }
        loads.append(GpuLoad(gpu, gpu in trainers, parts))
    return card, loads


def train_gpus(ctx: Preflight) -> list[int]:
    """The training GPUs' ids: the layout's, else $CUDA_VISIBLE_DEVICES, else 0..n_gpus_per_node-1."""
    if ctx.layout.train_gpus is not None:
        return list(ctx.layout.train_gpus)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible.strip() and all(part.strip().isdigit() for part in visible.split(",")):
        return [int(part) for part in visible.split(",")]
    return list(range(ctx.select("trainer.n_gpus_per_node", 1)))


def measure_gpus() -> list[tuple[float, float]] | None:
    """(total, used) GiB of each visible GPU, or None where there is none (a login node, CI)."""
    import torch

    if not torch.cuda.is_available():
        return None
    sizes = [torch.cuda.mem_get_info(device) for device in range(torch.cuda.device_count())]
    return [(total / GIB, (total - free) / GIB) for free, total in sizes]


@functools.cache
def _model_size(path: str) -> tuple[int, int] | None:
    """(parameters, vocabulary) of a causal LM from its config alone (built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(os.path.expanduser(path), local_files_only=True)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # no config here (a hub id not in the cache) or an architecture this transformers lacks
        return None
    return sum(parameter.numel() for parameter in model.parameters()), config.vocab_size


def _fsdp_gib(ctx: Preflight, params: int, gpus: int) -> float:
    """Resident FSDP states per GPU: the actor's and the critic's (the reference model's when on GPU)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        critic, reference = need_critic(ctx.config), need_reference_policy(ctx.config)
    total = _trained_bytes(ctx, "actor_rollout_ref.actor.fsdp_config") + (
        _trained_bytes(ctx, "critic.fsdp") if critic else 0
    )
    if reference and not ctx.select("actor_rollout_ref.ref.fsdp_config.param_offload", False):
        total += REFERENCE_BYTES_PER_PARAM
    return params * total / max(1, gpus) / GIB


def _trained_bytes(ctx: Preflight, fsdp: str) -> int:
    """Bytes per parameter a trained model keeps on GPU (fp32 parameters and gradients 8, Adam 8), less what
    its FSDP config offloads."""
    params_and_grads = 0 if ctx.select(f"{fsdp}.param_offload", False) else 8
    optimizer = 0 if ctx.select(f"{fsdp}.optimizer_offload", False) else 8
    return params_and_grads + optimizer


def _rollout_gib(ctx: Preflight, card: float) -> float:
    return float(ctx.select("actor_rollout_ref.rollout.gpu_memory_utilization", 0.5)) * card


def _arithmetic(load: GpuLoad, rollout_gib: float, card: float) -> str:
    return f"GPU {load.gpu}: {load.spelled(rollout_gib)} = {load.rollout_total(rollout_gib):.1f} of {card:.1f} GiB"


def _fitting_layout(ctx: Preflight, card: float, fullest: GpuLoad) -> str:
    """The one-line fix: the squeezer off the training GPUs, a busy GPU freed, else a smaller rollout share."""
    layout, trainers = ctx.layout, train_gpus(ctx)
    if set(trainers) & set(
        layout.squeezer_gpus
    ):  # the squeezer takes the node's last GPU(s), training the rest
        every = sorted(set(trainers) | set(layout.retriever_gpus) | set(layout.squeezer_gpus))
        split = len(every) - len(layout.squeezer_gpus)
        ids = ",".join(map(str, every[:split]))
        return (
            f"TRAIN_GPUS={ids} RETRIEVER_GPUS={ids} SQUEEZER_GPUS={','.join(map(str, every[split:]))} "
            f"(the squeezer on its own GPU, the index beside training; {LAYOUT_DOC})"
        )
    others = fullest.parts.get("measured other processes", 0.0)
    if others > card / 4:
        return f"free GPU {fullest.gpu} (other processes hold {others:.1f} GiB there: nvidia-smi), or leave it out of TRAIN_GPUS"
    share = int((card - sum(fullest.parts.values())) / card * 20) / 20
    return f"actor_rollout_ref.rollout.gpu_memory_utilization={max(share, 0.05):.2f} ({LAYOUT_DOC})"


def _passes(ctx: Preflight) -> list[tuple[str, str, str, str, str]]:
    """(pass, config section, dynamic flag, token budget, micro-batch) of each vocabulary-wide forward."""
    from verl.trainer.ppo.utils import need_reference_policy

    log_prob = (
        "log_prob_use_dynamic_bsz",
        "log_prob_max_token_len_per_gpu",
        "log_prob_micro_batch_size_per_gpu",
    )
    passes = [("old-log-prob", "actor_rollout_ref.rollout", *log_prob)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if need_reference_policy(ctx.config):
            passes.append(("reference", "actor_rollout_ref.ref", *log_prob))
    passes.append(
        (
            "update",
            "actor_rollout_ref.actor",
            "use_dynamic_bsz",
            "ppo_max_token_len_per_gpu",
            "ppo_micro_batch_size_per_gpu",
        )
    )
    return passes


def _tokens_within(gib: float, vocab: int, copies: int, longest: int) -> int:
    """The largest token budget (a multiple of 1024) whose logits fit in `gib`, and never under a sequence."""
    tokens = int(gib * GIB / (vocab * LOGIT_BYTES * copies)) // 1024 * 1024
    return max(tokens, longest)


def _dynamic_fix(section: str, budget: str, tokens: int) -> str:
    both = (
        "actor_rollout_ref.actor.use_dynamic_bsz=True actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True"
    )
    return f"{both} {section}.{budget}={tokens} (the recipes: USE_DYNAMIC_BSZ=True)"
