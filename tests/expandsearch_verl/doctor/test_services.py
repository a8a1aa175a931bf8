"""retriever / squeezer: the real retriever_server (demo corpus) on loopback, and a port nobody listens on."""

from __future__ import annotations

import pytest

from expandsearch_verl.doctor.report import Status


def test_a_running_retriever_passes_with_the_loops_request_shape(small_run, preflight, demo_retriever_url):
    _, results = preflight(small_run(retriever_urls=f"[{demo_retriever_url}]"), "retriever")
    assert [r.status for r in results] == [Status.PASS], results
    assert "passages" in results[0].detail and "/search of 3 x topk 10 gave" in results[0].detail


def test_a_client_timeout_shorter_than_the_servers_budget_warns(small_run, preflight, demo_retriever_url):
    """ExpandSearch's timeout 30 = the server's squeeze_timeout_s 30: the fallback would land too late."""
    _, results = preflight(small_run(retriever_urls=f"[{demo_retriever_url}]", timeout_s=30), "retriever")
    assert [r.status for r in results] == [Status.PASS, Status.WARN], results
    assert "squeeze_timeout_s=30 + 15 s" in results[1].detail
    assert results[1].fix == (
        'AGENT_LOOP_SETTINGS="timeout_s=45" on a recipe; elsewhere '
        "expandsearch agent-loop-config --set timeout_s=45 (or the YAML's timeout_s)"
    )


def test_a_retriever_that_is_down_fails_with_how_to_start_it(small_run, preflight, free_port):
    url = f"http://127.0.0.1:{free_port}"
    _, results = preflight(small_run(retriever_urls=f"[{url}]"), "retriever", timeout_s=2.0)
    assert [r.status for r in results] == [Status.FAIL]
    assert url in results[0].detail and "recipes/launch_retriever.sh" in results[0].fix


def test_every_replica_is_checked(small_run, preflight, demo_retriever_url, free_port):
    dead = f"http://127.0.0.1:{free_port}"
    _, results = preflight(
        small_run(retriever_urls=f"[{demo_retriever_url},{dead}]"), "retriever", timeout_s=2.0
    )
    assert [r.status for r in results] == [Status.PASS, Status.FAIL]


def test_a_shape_the_server_refuses_fails(small_run, preflight, demo_retriever_url):
    _, results = preflight(small_run(retriever_urls=f"[{demo_retriever_url}]", topk=500), "retriever")
    assert (
        results[0].status is Status.FAIL
        and "topk 500" in results[0].detail
        and "--max-topk" in results[0].fix
    )


def test_loopback_urls_warn_on_several_nodes(small_run, preflight, demo_retriever_url):
    _, results = preflight(
        small_run("trainer.nnodes=2", retriever_urls=f"[{demo_retriever_url}]"), "retriever"
    )
    assert [r.status for r in results] == [Status.PASS, Status.WARN] and "loopback" in results[1].detail


def test_network_checks_can_be_skipped(small_run, preflight):
    _, results = preflight(small_run(), "retriever", "squeezer", skip_network=True)
    assert [r.status for r in results] == [Status.SKIP, Status.SKIP]


def test_squeeze_true_against_a_server_without_squeezer_fails(small_run, preflight, demo_retriever_url):
    _, results = preflight(small_run(retriever_urls=f"[{demo_retriever_url}]", squeeze="true"), "squeezer")
    assert [r.status for r in results] == [Status.FAIL], results
    assert "--squeezer none" in results[0].detail and "launch_squeezer.sh" in results[0].fix


def test_squeeze_false_needs_no_squeezer(small_run, preflight, demo_retriever_url):
    _, results = preflight(small_run(retriever_urls=f"[{demo_retriever_url}]", squeeze="false"), "squeezer")
    assert [r.status for r in results] == [Status.PASS] and "does not squeeze" in results[0].detail


@pytest.fixture(scope="module")
def squeezing_retriever_url():
    """The demo server with the extractive squeezer and a bearer token (the real server, another process)."""
    from retriever_server.process import ServerProcess

    server = ServerProcess(
        ["--demo", "--squeezer", "extractive", "--auth-token", "preflight-secret"], timeout_s=600
    )
    try:
        yield server.url
    finally:
        server.stop()


def test_a_token_protected_retriever_needs_the_token(
    small_run, preflight, squeezing_retriever_url, monkeypatch
):
    monkeypatch.delenv("EXPANDSEARCH_RETRIEVER_TOKEN", raising=False)
    _, results = preflight(small_run(retriever_urls=f"[{squeezing_retriever_url}]"), "retriever")
    assert results[0].status is Status.FAIL and "EXPANDSEARCH_RETRIEVER_TOKEN" in results[0].fix
    monkeypatch.setenv("EXPANDSEARCH_RETRIEVER_TOKEN", "preflight-secret")
    _, results = preflight(small_run(retriever_urls=f"[{squeezing_retriever_url}]"), "retriever", "squeezer")
    assert [r.status for r in results] == [Status.PASS, Status.PASS], results
    assert "squeezer 'extractive' summarised a passage" in results[1].detail


@pytest.mark.slow  # a server of its own: ~10 s to start, the suite's budget is tight
def test_a_squeezer_that_fails_behind_the_retriever_fails(small_run, preflight, free_port):
    """The retriever is up but its OpenAI-compatible squeezer is not: /squeeze answers 502."""
    from retriever_server.process import ServerProcess

    dead = f"http://127.0.0.1:{free_port}/v1"
    args = [
        "--demo",
        "--squeezer",
        "openai",
        "--squeezer-url",
        dead,
        "--squeezer-model",
        "m",
        "--squeezer-retries",
        "0",
    ]
    server = ServerProcess(args, timeout_s=600)
    try:
        _, results = preflight(small_run(retriever_urls=f"[{server.url}]", squeeze="true"), "squeezer")
    finally:
        server.stop()
    assert [r.status for r in results] == [Status.FAIL], results
    assert "/squeeze answered 502" in results[0].detail and "--squeezer-url" in results[0].fix
