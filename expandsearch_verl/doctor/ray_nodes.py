"""The multi-node check: run one probe task on every alive node of the Ray cluster the job will use.

verl places its workers (and the TaskRunner that reads the data) on any node, so each node must
import the plugin, see the same absolute paths (agent-loop YAML, parquet files, local model
directories) and reach every retriever URL with its own `EXPANDSEARCH_RETRIEVER_TOKEN`. The probe
runs in the job's runtime environment, exactly where verl's workers will, and uses the standard
library only, so a node without the plugin still reports.
"""

from __future__ import annotations

import os
from typing import Any

from expandsearch_verl.doctor.context import Preflight
from expandsearch_verl.doctor.report import CheckResult, failed, passed, skipped, warned

WORKER_FIX = "bash recipes/multinode/start_ray_worker.sh on each node (docs/recipes.md, 'Multi-node')"


def check_ray_nodes(ctx: Preflight) -> list[CheckResult]:
    name = "ray-nodes"
    nodes, per_node = ctx.select("trainer.nnodes", 1), ctx.select("trainer.n_gpus_per_node", 1)
    if ctx.ray_address is None:
        if nodes > 1:
            return [
                warned(
                    name,
                    f"trainer.nnodes={nodes}, but the other nodes were not checked",
                    "pass --ray-address auto (inside `ray job submit`, RAY_ADDRESS is set and used by default)",
                )
            ]
        return [skipped(name, "one node (--ray-address checks every node of a running cluster)")]
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        local = ctx.ray_address == "local"
        ray.init(
            address=None if local else ctx.ray_address,
            log_to_driver=False,
            logging_level="ERROR",
            **({"include_dashboard": False, "num_cpus": 1} if local else {}),
        )
    try:
        alive = [node for node in ray.nodes() if node["Alive"]]
        cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        reports = _probe_nodes(
            ray, alive, _paths(ctx), [] if ctx.skip_network else ctx.retriever_urls(), ctx.timeout_s
        )
    finally:
        if started_here:
            ray.shutdown()
    results = []
    if len(alive) < nodes:
        results.append(
            failed(name, f"{len(alive)} alive node(s) in the cluster, trainer.nnodes={nodes}", WORKER_FIX)
        )
    if cluster_gpus < nodes * per_node:
        results.append(
            failed(
                name,
                f"the cluster has {cluster_gpus} GPU(s); the run asks for {nodes} x {per_node}",
                f"trainer.nnodes / trainer.n_gpus_per_node to match the cluster, or {WORKER_FIX}",
            )
        )
    for report in reports:
        where = f"{report['host']} ({report['ip']})"
        if report["problems"]:
            results.append(
                failed(
                    name,
                    f"{where}: " + "; ".join(report["problems"]),
                    "install the plugin there (pip install -e .), share the paths (one filesystem), "
                    "and start Ray with EXPANDSEARCH_RETRIEVER_TOKEN exported",
                )
            )
        else:
            results.append(
                passed(
                    name,
                    f"{where}: plugin {report['plugin']}, {report['paths']} path(s) present, "
                    f"{report['urls']} retriever(s) answer",
                )
            )
    return results


def _paths(ctx: Preflight) -> list[str]:
    """Absolute paths every node must see: the agent-loop YAML, the parquet files, local model directories."""
    keys = (
        "actor_rollout_ref.rollout.agent.agent_loop_config_path",
        "data.train_files",
        "data.val_files",
        "actor_rollout_ref.model.path",
        "critic.model.path",
    )
    paths = []
    for key in keys:
        value = ctx.select(key)
        for item in [value] if isinstance(value, str) else list(value or []):
            path = os.path.expanduser(str(item))
            if (
                os.path.exists(path) and path not in paths
            ):  # a hub id or a path missing here is another check's business
                paths.append(path)
    return paths


def _probe_nodes(
    ray: Any, alive: list[dict], paths: list[str], urls: list[str], timeout_s: float
) -> list[dict]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_make_probe())
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
            paths, urls, timeout_s
        )
        for node in alive
    ]
    reports = ray.get(refs, timeout=max(120.0, 4 * timeout_s))
    for node, report in zip(alive, reports, strict=True):
        report["ip"] = node.get("NodeManagerAddress", "?")
    return reports


def _make_probe():
    """The probe task. Defined inside a function so Ray ships its code by value: a node that cannot
    import `expandsearch_verl` still runs it and says so."""

    def probe(paths: list[str], urls: list[str], timeout_s: float) -> dict:
        import importlib
        import json
        import os
        import socket
        import urllib.error
        import urllib.request

        report: dict = {
            "host": socket.gethostname(),
            "problems": [],
            "plugin": None,
            "paths": len(paths),
            "urls": len(urls),
        }
        try:
            importlib.import_module("expandsearch_verl.agent_loop")
            report["plugin"] = os.path.dirname(importlib.import_module("expandsearch_verl.reward").__file__)
        except Exception as exc:
            report["problems"].append(f"cannot import the plugin ({type(exc).__name__}: {exc})")
        report["problems"] += [f"missing {path}" for path in paths if not os.path.exists(path)]
        token = os.environ.get("EXPANDSEARCH_RETRIEVER_TOKEN")
        headers = {
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        }
        body = json.dumps({"queries": ["preflight check"], "topk": 1, "squeeze": False}).encode()
        for url in urls:
            request = urllib.request.Request(url.rstrip("/") + "/search", data=body, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=timeout_s) as response:
                    response.read()
            except urllib.error.HTTPError as exc:
                report["problems"].append(f"{url}/search answered {exc.code}")
            except Exception as exc:
                report["problems"].append(f"cannot reach {url} ({type(exc).__name__}: {exc})")
        return report

    return probe
