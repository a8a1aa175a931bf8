"""Every line of verl 0.9.1 the package depends on beyond its public extension points, in one table.

verl's public ways in (the agent-loop YAML, the `pkg://` reward, the platform registry,
`RolloutReplicaRegistry`, `EngineRegistry.register`, hydra overrides) carry most of the package. The
rest leans on verl internals: a module-level dict, the exact backend string verl builds for its
process group, defaults that only hold on a GPU, the way the trainer logs its rollout's timing dict.
Each is a `Reach` below: the verl file:line, the text expected there, who relies on it and why.

`check_verl(user)` reads the installed verl and raises `VerlChanged` naming every reach that moved
(file:line, expected vs found). It runs where a change would otherwise surface late or silently:
the CPU backend's start-up (every process of a CPU run), the construction of
`SearchMetricsAgentLoopManager` (before the first step, not a silent loss of `timing_s/search/*`),
and `expandsearch doctor`'s `verl` check (all reaches, before a recipe launches).
tests/expandsearch_verl/test_verl_internals.py checks each reach. Upgrading verl: run that test,
re-read each reach it names in the new verl, fix the code that relies on it, update the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VERL_VERSION = "0.9.1"

# Who relies on a reach (`Reach.user`, `check_verl(user)`).
CPU_BACKEND = "cpu backend"  # expandsearch_verl/cpu/: verl's trainer on a CPU
SEARCH_METRICS = "search metrics"  # expandsearch_verl/search_metrics.py: timing_s/search/* every step
DOCTOR = "doctor"  # expandsearch_verl/doctor/: the preflight's agent-loop, data and model checks
USERS = (CPU_BACKEND, SEARCH_METRICS, DOCTOR)


@dataclass(frozen=True)
class Reach:
    file: str  # relative to the verl package
    line: int
    text: str  # what that line must still contain
    user: str  # one of USERS
    why: str  # what the user relies on there, and what it does about it


REACHES: dict[str, Reach] = {
    "rollout_adapter_table": Reach(
        "workers/rollout/base.py",
        89,
        "_ROLLOUT_REGISTRY = {",
        CPU_BACKEND,
        "the in-worker rollout table has no register function and get_rollout_class asserts the name "
        "is in it: cpu.verl_hooks.register_rollout_adapter adds (name, 'async') to the dict",
    ),
    "rollout_adapter_lookup": Reach(
        "workers/rollout/base.py",
        106,
        "assert (rollout_name, mode) in _ROLLOUT_REGISTRY",
        CPU_BACKEND,
        "the lookup register_rollout_adapter feeds",
    ),
    "fsdp_engine_devices": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        1143,
        'model_type="language_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"]',
        CPU_BACKEND,
        "the FSDP actor engine is registered for cuda/npu only: cpu.verl_hooks.register_cpu_engines "
        "registers the same class for device 'cpu' through EngineRegistry.register",
    ),
    "fsdp_value_engine_devices": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        1594,
        'model_type="value_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"]',
        CPU_BACKEND,
        "the same for the critic (PPO's value model)",
    ),
    "process_group_backend": Reach(
        "utils/distributed.py",
        89,
        'f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"',
        CPU_BACKEND,
        "on a CPU this is 'cpu:gloo,cpu:gloo', which torch refuses (duplicate device type): "
        "cpu.verl_hooks.join_worker_process_group starts a plain gloo group first",
    ),
    "process_group_skip": Reach(
        "utils/distributed.py",
        90,
        "if not torch.distributed.is_initialized():",
        CPU_BACKEND,
        "verl skips its own process-group start when one exists",
    ),
    "sft_process_group": Reach(
        "utils/distributed.py",
        63,
        'backend = f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"',
        CPU_BACKEND,
        "verl's SFT trainer (sft_trainer_entry) starts its process group with this backend "
        "unconditionally; on a CPU torch refuses it: expandsearch_verl.cpu.sft starts a plain gloo "
        "group and then runs verl's SFTTrainer itself",
    ),
    "sft_trainer_entry": Reach(
        "trainer/sft_trainer.py",
        455,
        "initialize_global_process_group()",
        CPU_BACKEND,
        "the call in run_sft that expandsearch_verl.cpu.sft stands in for (the rest of run_sft: "
        "SFTTrainer(config).fit())",
    ),
    "sft_config_folder": Reach(
        "trainer/sft_trainer.py",
        461,
        '@hydra.main(config_path="config", config_name="sft_trainer_engine"',
        CPU_BACKEND,
        "verl's SFT config is trainer/config/sft_trainer_engine.yaml beside the trainer, a folder, not an "
        "importable name: expandsearch_verl.cpu.sft.CONFIG_DIR composes it from that path",
    ),
    "replica_server_address": Reach(
        "workers/rollout/replica.py",
        128,
        "self._server_address: str = None",
        CPU_BACKEND,
        "RolloutReplica has no setter for its server: cpu.replica.HFReplica.launch_servers writes the "
        "protected _server_address, the key verl's agent-loop router reads through server_address (line 249)",
    ),
    "replica_server_handle": Reach(
        "workers/rollout/replica.py",
        129,
        "self._server_handle: ActorHandle = None",
        CPU_BACKEND,
        "and _server_handle, the Ray actor the router sends generate requests to (server_handle, line 254)",
    ),
    "worker_group_env": Reach(
        "single_controller/ray/base.py",
        635,
        '"WG_PREFIX": self.name_prefix,',
        CPU_BACKEND,
        "verl's worker processes carry WG_PREFIX, RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT: "
        "how cpu.verl_hooks.is_verl_worker tells a worker from any other Ray process",
    ),
    "bundle_device_resource": Reach(
        "single_controller/ray/base.py",
        148,
        "bundle[device_name] = 1",
        CPU_BACKEND,
        "placement bundles ask for one device each: the platform names 'GPU' and "
        "ray_kwargs.ray_init.num_gpus declares logical ones",
    ),
    "resource_check_gpus": Reach(
        "single_controller/ray/base.py",
        230,
        'node_info.get("GPU", 0) if "GPU" in node_info else node_info.get("NPU", 0)',
        CPU_BACKEND,
        "the resource check counts GPU/NPU only (same fix)",
    ),
    "flash_attention_default": Reach(
        "workers/config/model.py",
        185,
        'self.override_config.get("attn_implementation", "flash_attention_2")',
        CPU_BACKEND,
        "flash-attn is GPU-only: override_config.attn_implementation=sdpa, use_remove_padding=false "
        "(packed sequences need flash-attn's varlen kernel)",
    ),
    "fsdp2_reference_offload": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        462,
        "offload_policy = CPUOffloadPolicy(pin_memory=True)",
        CPU_BACKEND,
        "a forward-only (reference) engine pins memory, which needs an accelerator: the reference "
        "becomes a trainable engine at lr 0 (ref.fsdp_config.forward_only=false plus an optimizer)",
    ),
    "fsdp1_sync_states": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        444,
        "sync_module_states=True,",
        CPU_BACKEND,
        "FSDP1 broadcasts from an accelerator: strategy=fsdp2",
    ),
    "device_id_as_target": Reach(
        "workers/engine/fsdp/transformer_impl.py",
        1028,
        "device = get_device_id()",
        CPU_BACKEND,
        "verl moves tensors with .to(get_device_id()): the platform's current_device() is 'cpu', not 0",
    ),
    "flops_device_name": Reach(
        "utils/flops_counter.py",
        80,
        "device_name = get_torch_device().get_device_name()",
        CPU_BACKEND,
        "the flops counter asks the device module for a name: the stand-in answers 'CPU'",
    ),
    "manager_class_knob": Reach(
        "trainer/ppo/ray_trainer.py",
        940,
        'manager_class_fqn = self.config.actor_rollout_ref.rollout.get("agent", {}).get("agent_loop_manager_class")',
        SEARCH_METRICS,
        "the legacy trainer reads rollout.agent.agent_loop_manager_class, the knob that selects "
        "SearchMetricsAgentLoopManager",
    ),
    "manager_class_load": Reach(
        "trainer/ppo/ray_trainer.py",
        942,
        'AgentLoopManager = load_class_from_fqn(manager_class_fqn, "AgentLoopManager")',
        SEARCH_METRICS,
        "and loads the manager from its FQN",
    ),
    "rollout_timing_taken": Reach(
        "trainer/ppo/ray_trainer.py",
        1518,
        'timing_raw.update(combined_gen_output.meta_info["timing"])',
        SEARCH_METRICS,
        "every step takes the manager's meta_info['timing'], where the manager puts the step's "
        "search metrics (the only per-step route for them: the batch's other columns are logged in "
        "validation only)",
    ),
    "timing_metrics_logged": Reach(
        "trainer/ppo/ray_trainer.py",
        1783,
        "metrics.update(compute_timing_metrics(batch=batch, timing_raw=timing_raw))",
        SEARCH_METRICS,
        "and logs that dict through compute_timing_metrics",
    ),
    "timing_prefix": Reach(
        "trainer/ppo/metric_utils.py",
        645,
        '**{f"timing_s/{name}": value for name, value in timing_raw.items()},',
        SEARCH_METRICS,
        "each entry as timing_s/<name>: search_metrics.LOGGED_PREFIX, the keys docs/agent-loop.md lists",
    ),
    "agent_loop_registry": Reach(
        "experimental/agent_loop/agent_loop.py",
        467,
        "_agent_loop_registry: dict[str, dict] = {}",
        DOCTOR,
        "verl's agent-loop names, private: the data check accepts a row's agent_name found there or "
        "in the YAML",
    ),
    "register_replaces_yaml_entry": Reach(
        "experimental/agent_loop/agent_loop.py",
        475,
        '_agent_loop_registry[agent_name] = {"_target_": fqdn}',
        DOCTOR,
        "@register(name) overwrites the YAML's entry (its settings) when the worker imports the "
        "class: the agent-loop check refuses a class whose import left this entry",
    ),
    "continuous_token_families": Reach(
        "utils/tokenizer/continuous_token_wiring.py",
        112,
        "_MODEL_TYPE_TO_FAMILY: dict[str, ContinuousTokenModelFamily] = {",
        DOCTOR,
        "the model types with a Continuous-Token builder, private: the model check warns for any other",
    ),
}


class VerlChanged(RuntimeError):
    """The installed verl no longer matches what the package was written against."""


def verl_root() -> Path:
    import verl

    return Path(verl.__file__).parent


def reaches_of(user: str | None = None) -> dict[str, Reach]:
    """The reaches `user` relies on (every reach for None); an unknown user is refused."""
    if user is not None and user not in USERS:
        raise ValueError(f"user {user!r} relies on no verl internal; users: {', '.join(USERS)}")
    return {name: reach for name, reach in REACHES.items() if user in (None, reach.user)}


def changes(user: str | None = None) -> list[str]:
    """One line per reach of `user` whose verl line moved or changed (and one for another verl version)."""
    import verl

    problems = []
    if verl.__version__ != VERL_VERSION:
        problems.append(f"verl is {verl.__version__}; expandsearch_verl was written against {VERL_VERSION}")
    root = verl_root()
    for name, reach in reaches_of(user).items():
        path = root / reach.file
        lines = path.read_text().splitlines() if path.exists() else []
        found = lines[reach.line - 1].strip() if len(lines) >= reach.line else "(no such line)"
        if reach.text not in found:
            problems.append(
                f"{name} ({reach.user}): verl/{reach.file}:{reach.line} should read {reach.text!r}, "
                f"found {found!r} ({reach.why})"
            )
    return problems


def check_verl(user: str | None = None) -> None:
    """Raise `VerlChanged` naming every reach of `user` (every reach for None) that moved."""
    problems = changes(user)
    if problems:
        whose = f"the {user}" if user else "expandsearch_verl"
        raise VerlChanged(
            f"{whose} depends on verl internals that changed (all listed in {__name__}.REACHES):\n  "
            + "\n  ".join(problems)
        )
