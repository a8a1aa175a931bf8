"""What `DEVICE=cpu` adds to a training recipe: two environment variables and verl overrides.

The overrides go after the recipe's own and before the user's arguments, so what runs on a CPU is
the recipe a GPU user launches with only these differences. Each says why (the
`expandsearch_verl.verl_internals` reach it answers, where it answers one). Settings that only
work on a GPU are refused when the user passes them, naming the setting and the fix.
"""

from __future__ import annotations

import re

ENV = {
    "VERL_PLATFORM": "cpu",  # platform.CPUPlatform, registered by the plugin
    "VERL_USE_EXTERNAL_MODULES": "expandsearch_verl.cpu.plugin",  # imported by verl in every process
}

ROLLOUTS = ("hf", "scripted")  # the backend's rollout names: replica.HFReplica, replica.ScriptedReplica

_REFERENCE_OPTIMIZER = "+actor_rollout_ref.ref.optim={_target_:verl.workers.config.FSDPOptimizerConfig,lr:0.0,total_training_steps:1}"
_FP32 = "{param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}"

OVERRIDES = (
    "trainer.device=cpu",
    "trainer.nnodes=1",
    "trainer.n_gpus_per_node=1",  # one FSDP rank; the cores are shared by every process anyway
    "+ray_kwargs.ray_init.num_gpus=1",  # bundle_device_resource, resource_check_gpus: logical GPUs
    "ray_kwargs.ray_init.num_cpus=8",  # logical too: one bundle asks 3, agent loop and reward workers 1 each
    "data.dataloader_num_workers=0",  # no extra processes on a laptop
    "actor_rollout_ref.rollout.name=hf",  # replica.HFReplica (tests: scripted)
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    "actor_rollout_ref.rollout.agent.num_workers=1",  # one agent-loop process (GPU default: 8)
    "reward.num_workers=1",
    "actor_rollout_ref.actor.strategy=fsdp2",  # fsdp1_sync_states
    "critic.strategy=fsdp2",
    "actor_rollout_ref.model.use_remove_padding=false",  # flash_attention_default
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "critic.model.use_remove_padding=false",
    "+critic.model.override_config.attn_implementation=sdpa",
    "actor_rollout_ref.actor.use_torch_compile=false",
    "actor_rollout_ref.actor.fsdp_config.use_torch_compile=false",
    "actor_rollout_ref.ref.fsdp_config.use_torch_compile=false",
    "critic.fsdp.use_torch_compile=false",
    # fp32 compute (bf16 is slower on most CPUs): the rollout's fp32 log-probs then match the actor's
    f"+actor_rollout_ref.actor.fsdp_config.mixed_precision={_FP32}",
    f"+actor_rollout_ref.ref.fsdp_config.mixed_precision={_FP32}",
    "actor_rollout_ref.ref.fsdp_config.param_offload=false",  # the reference already lives in host memory
    "actor_rollout_ref.ref.fsdp_config.forward_only=false",  # fsdp2_reference_offload: a trainable engine...
    _REFERENCE_OPTIMIZER,  # ... at lr 0, so it never moves
)

# (setting, pattern of values that need a GPU, the fix); checked on the user's own arguments.
GPU_ONLY = (
    ("actor_rollout_ref.rollout.name", r"vllm|sglang|trtllm", "leave it out (DEVICE=cpu uses hf) or set hf"),
    ("attn_implementation", r"flash_attention.*", "leave it out (DEVICE=cpu uses sdpa)"),
    ("use_remove_padding", r"(?i)true", "leave it out: packed sequences need flash-attn's varlen kernel"),
    ("use_fused_kernels", r"(?i)true", "leave it out: the fused kernels are Triton (GPU)"),
    ("strategy", r"fsdp|megatron", "leave it out: DEVICE=cpu runs FSDP2"),
    ("trainer.use_v1", r"(?i)true", "leave it out: the CPU backend runs the legacy trainer (USE_V1=False)"),
    ("trainer.n_gpus_per_node", r"(?!1$).*", "leave it out: DEVICE=cpu runs one rank"),
    ("trainer.nnodes", r"(?!1$).*", "leave it out: DEVICE=cpu runs on this machine"),
    ("param_offload", r"(?i)true", "leave it out: the model already lives in host memory"),
)


class GPUOnlySetting(ValueError):
    """A user argument that only works on a GPU, named with the fix."""


def check_arguments(arguments: list[str]) -> None:
    """Refuse, all at once, the user's hydra arguments that need a GPU."""
    problems = []
    for argument in arguments:
        key, _, value = argument.lstrip("+~").partition("=")
        for setting, pattern, fix in GPU_ONLY:
            unquoted = value.strip().strip("'\"")  # hydra reads name='vllm' as vllm
            if (key == setting or key.endswith("." + setting)) and re.fullmatch(pattern, unquoted):
                problems.append(f"{argument}: needs a GPU; with DEVICE=cpu {fix}")
    if problems:
        raise GPUOnlySetting("\n".join(problems))
