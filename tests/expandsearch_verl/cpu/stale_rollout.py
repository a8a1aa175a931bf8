"""A deliberately stale rollout for the trainer test: `rollout.name=stale` never takes the actor's weights.

Named after the backend's plugin in VERL_USE_EXTERNAL_MODULES, so verl imports it in every process.
The scripted server it runs keeps the weights it loaded from the model path: a trainer test must
see the rollout's log-probs drift from the actor's once the actor has been updated.
"""

from __future__ import annotations

from typing import Any

from verl.workers.rollout.replica import RolloutReplicaRegistry

from expandsearch_verl.cpu import verl_hooks
from expandsearch_verl.cpu.plugin import ADAPTER
from expandsearch_verl.cpu.replica import ScriptedReplica
from expandsearch_verl.cpu.server import HFRolloutServer


class StaleServer(HFRolloutServer):
    async def load_weights(self, named_tensors: list[Any], last: bool, global_steps: int | None) -> int:
        return self.weight_loads  # received, never loaded


class StaleReplica(ScriptedReplica):
    server_class = StaleServer


RolloutReplicaRegistry.register("stale", lambda: StaleReplica)
verl_hooks.register_rollout_adapter("stale", ADAPTER)
