"""Checks on verl's own config: compose it like `verl.trainer.main_ppo`, run verl's `validate_config`,
and the batch and length arithmetic verl only enforces on the GPUs, after the models are loaded.

verl 0.9.1's engine workers split every step's trajectories evenly over the data-parallel ranks and
assert that each rank's share divides into micro-batches (`prepare_micro_batches`); `validate_config`
checks none of that. ferret's `log_prob_micro_batch_size_per_gpu=128`, for example, meets 64 rows
per GPU (512 prompts on 8 GPUs) and fails there, minutes into the first step.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from math import gcd

from expandsearch_verl.doctor.context import Preflight
from expandsearch_verl.doctor.report import CheckResult, failed, passed

CONFIG_MODULE = "verl.trainer.config"
CONFIG_NAME = "ppo_trainer"  # what `python -m verl.trainer.main_ppo` composes


def compose(overrides: list[str]):
    """verl's trainer config with these hydra overrides, composed as `main_ppo` does (no resolving)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        return hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))


def check_config(ctx: Preflight) -> list[CheckResult]:
    """Compose, then resolve every `${...}` interpolation on a copy."""
    from omegaconf import OmegaConf

    name = "config"
    try:
        config = compose(ctx.overrides)
    except Exception as exc:  # hydra raises several exception types; all mean the same to the user
        message = _first_line(exc)
        if "not in struct" in message or "Could not override" in message:
            fix = "check the key against `python -m verl.trainer.main_ppo --cfg job`; keys verl does not define need a leading '+'"
        elif "Could not append" in message or "already" in message:
            fix = "drop the '+' in front of that key: verl already defines it"
        else:
            fix = "correct the override named in the message (hydra syntax: key=value, +new.key=value, ~key)"
        return [failed(name, f"hydra cannot compose {CONFIG_NAME}: {message}", fix)]
    try:
        OmegaConf.resolve(OmegaConf.create(OmegaConf.to_container(config)))
    except Exception as exc:
        return [
            failed(
                name,
                f"an interpolation does not resolve: {_first_line(exc)}",
                "fix the ${...} reference named in the message",
            )
        ]
    ctx.config = config
    return [passed(name, f"{CONFIG_NAME} + {len(ctx.overrides)} overrides compose and resolve")]


def check_validate(ctx: Preflight) -> list[CheckResult]:
    """verl's `validate_config`, exactly as `main_ppo.main` calls it before starting Ray."""
    name = "validate"
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            use_critic, use_reference = need_critic(ctx.config), need_reference_policy(ctx.config)
            validate_config(config=ctx.config, use_reference_policy=use_reference, use_critic=use_critic)
    except Exception as exc:
        return [
            failed(
                name,
                f"verl refuses the config: {_first_line(exc)}",
                "change the key the message names (the batches check below says which value works)",
            )
        ]
    trainer = "V1 (TransferQueue)" if ctx.select("trainer.use_v1", True) else "legacy RayPPOTrainer"
    return [
        passed(
            name,
            f"verl 0.9.1 accepts it: critic {_on(use_critic)}, reference policy {_on(use_reference)}, trainer {trainer}",
        )
    ]


def check_batches(ctx: Preflight) -> list[CheckResult]:
    """Every step's trajectories split evenly over GPUs, mini-batches and micro-batches."""
    name = "batches"
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        use_critic, use_reference = need_critic(ctx.config), need_reference_policy(ctx.config)
    gpus = ctx.select("trainer.nnodes", 1) * ctx.select("trainer.n_gpus_per_node", 1)
    if gpus < 1:
        return [
            failed(
                name,
                f"trainer.nnodes x trainer.n_gpus_per_node = {gpus}: verl trains on GPUs",
                "trainer.n_gpus_per_node=8",
            )
        ]
    n = ctx.select("actor_rollout_ref.rollout.n", 1)
    prompts = ctx.select("data.train_batch_size")
    rows = prompts * n
    if rows % gpus:
        step = gpus // gcd(gpus, n)
        return [
            failed(
                name,
                f"data.train_batch_size x rollout.n = {prompts} x {n} = {rows} trajectories do not split over {gpus} GPUs",
                f"data.train_batch_size={_round_to(prompts, step)}",
            )
        ]
    per_gpu = rows // gpus
    problems: list[CheckResult] = []
    actor = "actor_rollout_ref.actor"
    problems += _mini_batches(ctx, name, actor, prompts, n, gpus)
    if not ctx.select("actor_rollout_ref.rollout.log_prob_use_dynamic_bsz", False):
        problems += _divides(
            ctx,
            name,
            per_gpu,
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
            "rows per GPU in the old-log-prob pass",
        )
    if ctx.select(f"{actor}.use_dynamic_bsz", False) != ctx.select(
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz", False
    ):
        problems.append(
            failed(
                name,
                f"{actor}.use_dynamic_bsz and actor_rollout_ref.rollout.log_prob_use_dynamic_bsz differ (verl asserts they match)",
                "set both to the same value",
            )
        )
    if use_reference and not ctx.select("actor_rollout_ref.ref.log_prob_use_dynamic_bsz", False):
        problems += _divides(
            ctx,
            name,
            per_gpu,
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
            "rows per GPU in the reference pass",
        )
    if use_critic:  # critic.ppo_mini_batch_size follows the actor's unless set: report a shared problem once
        shared = ctx.select("critic.ppo_mini_batch_size") == ctx.select(f"{actor}.ppo_mini_batch_size")
        problems += _mini_batches(ctx, name, "critic", prompts, n, gpus, check_size=not shared)
        if not ctx.select("critic.use_dynamic_bsz", False):
            problems += _divides(
                ctx,
                name,
                per_gpu,
                "critic.forward_micro_batch_size_per_gpu",
                "rows per GPU in the value pass",
            )
    if problems:
        return problems
    mini = ctx.select(f"{actor}.ppo_mini_batch_size")
    return [
        passed(
            name,
            f"{prompts} prompts x {n} = {rows} trajectories per step, {per_gpu} per GPU; "
            f"{prompts // mini} actor update(s) of {mini * n // gpus} per GPU",
        )
    ]


def check_lengths(ctx: Preflight) -> list[CheckResult]:
    """The rollout engine must hold the longest trajectory: prompt plus every turn's tokens."""
    name = "lengths"
    prompt = ctx.select("actor_rollout_ref.rollout.prompt_length")
    response = ctx.select("actor_rollout_ref.rollout.response_length")
    max_model_len = ctx.select("actor_rollout_ref.rollout.max_model_len")
    if max_model_len is not None and max_model_len < prompt + response:
        return [
            failed(
                name,
                f"rollout.max_model_len={max_model_len} < prompt_length + response_length = {prompt} + {response}",
                f"actor_rollout_ref.rollout.max_model_len={prompt + response}",
            )
        ]
    held = "the engine's default" if max_model_len is None else f"max_model_len {max_model_len}"
    return [
        passed(name, f"prompt {prompt} + response {response} tokens (all turns and observations) fit {held}")
    ]


def _mini_batches(
    ctx: Preflight, name: str, section: str, prompts: int, n: int, gpus: int, check_size: bool = True
) -> list[CheckResult]:
    """`section`'s PPO mini-batches: a divisor of the batch, an even split over GPUs, whole micro-batches."""
    mini = ctx.select(f"{section}.ppo_mini_batch_size")
    key = f"{section}.ppo_mini_batch_size"
    if (prompts % mini or (mini * n) % gpus) and not check_size:
        return []
    if prompts % mini:
        return [
            failed(
                name,
                f"data.train_batch_size={prompts} is not a multiple of {key}={mini}",
                f"{key}={_largest_divisor(prompts, mini)}",
            )
        ]
    if (mini * n) % gpus:
        fits = [m for m in range(1, prompts + 1) if prompts % m == 0 and (m * n) % gpus == 0]
        best = max((m for m in fits if m <= mini), default=min(fits))
        return [
            failed(
                name,
                f"{key} x rollout.n = {mini * n} trajectories per update do not split over {gpus} GPUs",
                f"{key}={best}",
            )
        ]
    if ctx.select(f"{section}.use_dynamic_bsz", False):
        return []
    return _divides(
        ctx, name, mini * n // gpus, f"{section}.ppo_micro_batch_size_per_gpu", "rows per GPU in one update"
    )


def _divides(ctx: Preflight, name: str, rows: int, key: str, what: str) -> list[CheckResult]:
    micro = ctx.select(key)
    if micro is None:
        return [failed(name, f"{key} is not set", f"{key}={_largest_divisor(rows, 16)}")]
    if rows % micro:
        return [
            failed(
                name,
                f"{rows} {what} are not divisible by {key}={micro} (verl asserts it on the GPUs)",
                f"{key}={_largest_divisor(rows, micro)}",
            )
        ]
    return []


def _largest_divisor(value: int, at_most: int) -> int:
    return max(d for d in range(1, max(1, min(value, at_most)) + 1) if value % d == 0)


def _round_to(value: int, step: int) -> int:
    return max(step, round(value / step) * step)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
