"""The state the preflight checks share: the overrides, the options, and what earlier checks loaded.

Checks run in order and later ones read what earlier ones put here (the composed config, the
agent-loop entries, the actor's tokenizer); a check whose input is missing reports `skip`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CPU_RUN = "CPU run (trainer.device=cpu): no GPU to check"  # why the GPU checks skip themselves


@dataclass
class GpuLayout:
    """Where the run's GPU processes sit on a node (physical GPU ids), for the GPU memory plan."""

    train_gpus: list[int] | None = (
        None  # the trainer's; None: $CUDA_VISIBLE_DEVICES, else 0..n_gpus_per_node-1
    )
    retriever_gpus: list[int] = field(default_factory=list)  # the retriever's faiss GPUs on this node
    squeezer_gpus: list[int] = field(default_factory=list)  # a local squeezer's GPUs (empty: remote or none)
    index_gib: float = 30.1  # the whole dense index on GPU: wiki-18 flat fp16 30.1 GiB (fp32 60.1)
    squeezer_memory_fraction: float = 0.9  # the squeezer's --gpu-memory-utilization (launch_squeezer.sh)
    card_gib: float | None = None  # each GPU's memory; None: measured, else an 80 GB card


@dataclass
class Preflight:
    """Inputs of one `expandsearch doctor` run and the facts its checks established so far."""

    overrides: list[str]
    skip_network: bool = False  # no retriever, squeezer or hub requests
    ray_address: str | None = None  # a running Ray cluster to check every node of
    timeout_s: float = 10.0  # per network request
    layout: GpuLayout = field(default_factory=GpuLayout)
    config: Any = None  # verl's composed DictConfig (set by the config check)
    agent_loops: dict[str, dict[str, Any]] | None = None  # agent_loop_config_path entries by name
    expandsearch_loops: dict[str, Any] = field(default_factory=dict)  # name -> validated AgentLoopConfig
    tokenizer: Any = None  # the actor model's tokenizer (set by the model check)

    def select(self, key: str, default: Any = None) -> Any:
        """A config value by dotted key, resolved; `default` when absent or null."""
        from omegaconf import OmegaConf

        value = OmegaConf.select(self.config, key, default=default)
        return default if value is None else value

    @property
    def on_cpu(self) -> bool:
        """A run of the CPU backend (trainer.device=cpu, what DEVICE=cpu sets): no GPU to plan for."""
        return self.select("trainer.device") == "cpu"

    def retriever_urls(self) -> list[str]:
        """Every retriever URL the ExpandSearch agent loops will call, in order, without repeats."""
        urls: list[str] = []
        for loop in self.expandsearch_loops.values():
            urls.extend(url for url in loop.retriever_urls if url not in urls)
        return urls
