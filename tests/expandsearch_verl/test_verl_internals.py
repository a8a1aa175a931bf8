"""Every reach into verl's internals holds in the installed verl, and a moved one is caught by name:
by `check_verl` of its user, by the code that runs that check (the CPU backend's start-up, the
search-metrics manager's construction) and by the doctor's `verl` check."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

from expandsearch_verl import verl_internals
from expandsearch_verl.doctor import CHECKS, Preflight, run_check
from expandsearch_verl.doctor.report import Status
from expandsearch_verl.verl_internals import (
    CPU_BACKEND,
    REACHES,
    SEARCH_METRICS,
    USERS,
    VerlChanged,
    check_verl,
    reaches_of,
)


def moved(monkeypatch, *names: str) -> None:
    """Point each named reach one line below where it is, as a verl release that inserted a line would."""
    table = dict(REACHES)
    for name in names:
        table[name] = dataclasses.replace(REACHES[name], line=REACHES[name].line + 1)
    monkeypatch.setattr(verl_internals, "REACHES", table)


def named(name: str) -> str:
    reach = REACHES[name]
    return rf"{name} \({reach.user}\): verl/{re.escape(reach.file)}:{reach.line + 1} should read {re.escape(repr(reach.text))}, found"


def test_every_reach_holds_in_the_installed_verl():
    check_verl()
    for user in USERS:
        check_verl(user)


def test_every_reach_has_a_known_user_and_every_user_a_reach():
    assert {reach.user for reach in REACHES.values()} == set(USERS)
    assert sum(len(reaches_of(user)) for user in USERS) == len(REACHES)


@pytest.mark.parametrize("name", sorted(REACHES))
def test_a_moved_reach_is_named_by_its_users_check_only(monkeypatch, name):
    moved(monkeypatch, name)
    user = REACHES[name].user
    with pytest.raises(VerlChanged, match=named(name)):
        check_verl(user)
    with pytest.raises(VerlChanged, match=named(name)):
        check_verl()
    for other in set(USERS) - {user}:
        check_verl(other)


def test_one_error_names_every_moved_reach(monkeypatch):
    names = ("rollout_adapter_table", "sft_trainer_entry", "flops_device_name")
    moved(monkeypatch, *names)
    with pytest.raises(VerlChanged) as error:
        check_verl(CPU_BACKEND)
    message = str(error.value)
    assert message.startswith("the cpu backend depends on verl internals that changed")
    for name in names:
        assert re.search(named(name), message)
    assert len(message.splitlines()) == 1 + len(names)


def test_another_verl_version_is_refused(monkeypatch):
    monkeypatch.setattr(verl_internals, "VERL_VERSION", "0.0.1")
    with pytest.raises(VerlChanged, match=r"written against 0\.0\.1"):
        check_verl(SEARCH_METRICS)


def test_an_unknown_user_is_refused():
    with pytest.raises(
        ValueError, match=r"user 'gpu backend' relies on no verl internal; users: cpu backend"
    ):
        check_verl("gpu backend")


def test_the_search_metrics_manager_refuses_a_moved_reach_when_built(monkeypatch):
    from expandsearch_verl.search_metrics import SearchMetricsAgentLoopManager

    moved(monkeypatch, "rollout_timing_taken")
    with pytest.raises(VerlChanged, match=named("rollout_timing_taken")):
        SearchMetricsAgentLoopManager(config=None, llm_client=None)  # refused before verl reads either


def test_the_cpu_backend_refuses_a_moved_reach_at_start_up(monkeypatch):
    plugin = importlib.import_module("expandsearch_verl.cpu.plugin")  # activates once, with the real table
    moved(monkeypatch, "process_group_backend")
    with pytest.raises(VerlChanged, match=named("process_group_backend")):
        plugin.activate()


def test_the_doctor_reports_every_reach_even_without_a_config(monkeypatch):
    def doctor_verl_check():
        return run_check(Preflight([]), "verl", dict(CHECKS)["verl"])  # Preflight([]): nothing composed

    [result] = doctor_verl_check()
    assert result.status is Status.PASS
    assert f"all {len(REACHES)} internal lines" in result.detail and "search metrics 5" in result.detail

    moved(monkeypatch, "timing_prefix", "agent_loop_registry")
    results = doctor_verl_check()
    assert [r.status for r in results] == [Status.FAIL, Status.FAIL]
    assert re.search(named("timing_prefix"), results[0].detail)
    assert re.search(named("agent_loop_registry"), results[1].detail)
    assert "docs/development.md#upgrading-verl" in results[0].fix


def test_every_protected_replica_attribute_the_backend_writes_is_a_reach():
    from expandsearch_verl.cpu.replica import HFReplica

    written = set(re.findall(r"self\.(_\w+) =", inspect.getsource(HFReplica)))
    declared = {
        match.group(1)
        for reach in reaches_of(CPU_BACKEND).values()
        if reach.file == "workers/rollout/replica.py" and (match := re.match(r"self\.(_\w+)", reach.text))
    }
    assert written == {"_server_address", "_server_handle"} and written <= declared


def test_the_sft_config_folder_is_the_one_verls_sft_entry_names():
    from expandsearch_verl.cpu.sft import CONFIG_DIR

    reach = REACHES["sft_config_folder"]
    (folder,) = re.findall(r'config_path="(\w+)"', reach.text)
    assert Path(CONFIG_DIR) == verl_internals.verl_root() / Path(reach.file).parent / folder
    assert (Path(CONFIG_DIR) / "sft_trainer_engine.yaml").is_file()
