"""Activates the CPU backend in the process that imports it: verl imports it in every process of a run.

Named by `VERL_USE_EXTERNAL_MODULES=expandsearch_verl.cpu.plugin` (verl/__init__.py imports the
modules listed there), together with `VERL_PLATFORM=cpu`; `python -m expandsearch_verl.cpu env`
prints both. Importing it anywhere else changes nothing until then: the platform is only chosen by
`VERL_PLATFORM`, and the rollout names it adds are new ones.
"""

from __future__ import annotations

from verl.workers.rollout.replica import RolloutReplicaRegistry

from expandsearch_verl.cpu import verl_hooks
from expandsearch_verl.cpu.overrides import ROLLOUTS
from expandsearch_verl.cpu.platform import register_platform, use_all_cores
from expandsearch_verl.verl_internals import CPU_BACKEND, check_verl

ADAPTER = "expandsearch_verl.cpu.replica.HFServerAdapter"


def _hf_replica():
    from expandsearch_verl.cpu.replica import HFReplica

    return HFReplica


def _scripted_replica():
    from expandsearch_verl.cpu.replica import ScriptedReplica

    return ScriptedReplica


def activate() -> None:
    """Check verl, register the platform and both rollouts; in a verl worker, the engines and gloo too."""
    check_verl(CPU_BACKEND)
    register_platform()
    RolloutReplicaRegistry.register("hf", _hf_replica)
    RolloutReplicaRegistry.register("scripted", _scripted_replica)
    for name in ROLLOUTS:
        verl_hooks.register_rollout_adapter(name, ADAPTER)
    if verl_hooks.is_verl_worker():
        verl_hooks.register_cpu_engines()
        verl_hooks.join_worker_process_group()
        use_all_cores()


activate()
