"""`rollout.name=hf` (and `scripted`): verl's rollout replica and in-worker adapter for `server.HFRolloutServer`.

verl 0.9.1 splits a rollout engine in two: the replica (picked by `RolloutReplicaRegistry` in the
trainer process) starts the server actors the agent loop sends requests to; the adapter (a
`BaseRollout` built inside each hybrid actor worker) is what the trainer's `naive` weight sync calls
after every update (`ActorRolloutRefWorker.update_weights`). Here the adapter streams the actor's
full tensors, in buckets of `checkpoint_engine.update_weights_bucket_megabytes`, to its replica's
server, which copies them into its model. Hybrid (colocated) mode only, as verl's CPU path runs.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica

from expandsearch_verl.cpu.server import HFRolloutServer

_HYBRID_ONLY = (
    "the hf/scripted rollouts run colocated with the actor only (actor_rollout_ref.hybrid_engine=True)"
)


def server_name(rollout_name: str, replica_rank: int) -> str:
    """The Ray actor name of a replica's server: the adapter in the worker finds it by this name."""
    return f"{rollout_name}_server_{replica_rank}"


class HFReplica(RolloutReplica):
    """One `HFRolloutServer` per replica, next to the replica's first hybrid worker."""

    policy = "hf"
    server_class: type = HFRolloutServer

    async def launch_servers(self) -> None:
        if len(self.workers) != self.world_size:
            raise RuntimeError(f"{len(self.workers)} workers for a rollout world size of {self.world_size}")
        node_id = await self.workers[0].__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id())
        model = self.model_config
        server = (
            ray.remote(self.server_class)
            .options(
                name=server_name(self.config.name, self.replica_rank),
                num_cpus=0,  # it shares the worker's cores, as vLLM shares its GPU
                max_concurrency=self.max_concurrency,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            )
            .remote(
                model_path=model.path,
                tokenizer_path=model.get("tokenizer_path"),
                rollout_config=self.config,
                policy=self.policy,
                batch_size=int(self.config.max_num_seqs),  # requests sharing one model.generate
            )
        )
        await server.stats.remote()  # wait until the model is loaded
        self.servers = [server]
        self._server_handle = server
        self._server_address = server_name(self.config.name, self.replica_rank)  # a key for verl's router

    async def init_standalone(self) -> None:
        raise NotImplementedError(_HYBRID_ONLY)

    async def init_colocated(self, resource_pool: Any) -> None:
        raise NotImplementedError(_HYBRID_ONLY)


class ScriptedReplica(HFReplica):
    """The HF server writing `ScriptedPolicy`'s turns (tests of the real trainer reach the retriever)."""

    policy = "scripted"


class HFServerAdapter(BaseRollout):
    """Inside a hybrid actor worker: hands the actor's weights to this replica's server."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        rank = int(os.environ["RANK"])
        self.replica_rank = rank // world_size if replica_rank == -1 else replica_rank
        self.is_sender = rank % world_size == 0
        self.bucket_bytes = int(self.config.checkpoint_engine.update_weights_bucket_megabytes) << 20
        self._server: Any = None

    async def update_weights(self, weights: Any, wire_format: str = "named_tensors", **kwargs: Any) -> None:
        """Send every `(name, tensor)` of the generator; every rank iterates it (FSDP gathers are collective)."""
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the HF rollout takes full named tensors, not {wire_format!r}")
        global_steps = kwargs.get("global_steps")
        bucket: list[tuple[str, Any]] = []
        size = 0
        for name, tensor in weights:
            if not self.is_sender:
                continue
            bucket.append((name, tensor.detach().cpu()))
            size += tensor.numel() * tensor.element_size()
            if size >= self.bucket_bytes:
                await self._send(bucket, last=False, global_steps=global_steps)
                bucket, size = [], 0
        if self.is_sender:
            await self._send(bucket, last=True, global_steps=global_steps)

    async def _send(self, bucket: list[tuple[str, Any]], last: bool, global_steps: int | None) -> None:
        if self._server is None:
            self._server = ray.get_actor(server_name(self.config.name, self.replica_rank))
        await self._server.load_weights.remote(bucket, last, global_steps)

    async def resume(self, tags: list[str]) -> None:
        """Nothing was released: the server's weights and cache stay in host memory."""

    async def release(self) -> None:
        """Nothing to release on a CPU."""
