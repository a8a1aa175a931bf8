"""ray-nodes: one probe task per alive node of a real (local, one-node) Ray cluster."""

from __future__ import annotations

import pytest

from expandsearch_verl.doctor.report import Status


def test_several_nodes_without_a_ray_address_warn(small_run, preflight):
    _, results = preflight(small_run("trainer.nnodes=2"), "ray-nodes")
    assert results[0].status is Status.WARN and "--ray-address auto" in results[0].fix


def test_one_node_without_a_ray_address_is_skipped(small_run, preflight):
    _, results = preflight(small_run(), "ray-nodes")
    assert results[0].status is Status.SKIP


@pytest.mark.slow
def test_every_node_imports_the_plugin_sees_the_paths_and_reaches_the_retrievers(
    small_run, preflight, demo_retriever_url, free_port, chat_model_dir, prepared_data_dir
):
    dead = f"http://127.0.0.1:{free_port}"
    overrides = small_run(retriever_urls=f"[{demo_retriever_url},{dead}]")
    _, results = preflight(overrides, "ray-nodes", ray_address="local", timeout_s=3.0)
    assert [r.status for r in results] == [Status.FAIL, Status.FAIL], results
    assert "the cluster has 0 GPU(s); the run asks for 1 x 2" in results[0].detail
    node = results[1]  # the one alive node: the plugin and 5 paths are fine, one retriever is not
    assert f"cannot reach {dead}" in node.detail and demo_retriever_url not in node.detail
    assert "missing" not in node.detail and "cannot import the plugin" not in node.detail
