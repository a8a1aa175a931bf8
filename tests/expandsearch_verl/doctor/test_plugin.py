"""reward / agent-loop: the hooks verl imports by name in its Ray workers, loaded here the same way."""

from __future__ import annotations

import textwrap

import pytest

from expandsearch_verl.doctor.report import Status


def test_our_reward_loads_and_scores_the_sample(small_run, preflight):
    _, results = preflight(small_run("+reward.custom_reward_function.reward_kwargs.shaping=false"), "reward")
    assert results[0].status is Status.PASS
    assert "scores a correct sample 1 (reward_kwargs: shaping=False)" in results[0].detail


@pytest.mark.parametrize(
    ("override", "missing"),
    [
        ("reward.custom_reward_function.path=pkg://no_such_package.reward", "no_such_package"),
        ("reward.custom_reward_function.name=no_such_function", "no_such_function"),
    ],
)
def test_an_unloadable_reward_fails_with_the_install_fix(small_run, preflight, override, missing):
    _, results = preflight(small_run(override), "reward")
    assert results[0].status is Status.FAIL and missing in results[0].detail
    assert "pip install -e ." in results[0].fix


def test_a_bad_reward_kwarg_fails_before_the_first_trajectory(small_run, preflight):
    _, results = preflight(
        small_run("+reward.custom_reward_function.reward_kwargs.wrong_well_formed=abc"), "reward"
    )
    assert results[0].status is Status.FAIL and "wrong_well_formed" in results[0].detail
    assert "reward_kwargs" in results[0].fix


def test_no_reward_path_fails(small_run, preflight):
    _, results = preflight(small_run("reward.custom_reward_function.path=null"), "reward")
    assert (
        results[0].status is Status.FAIL
        and results[0].fix == "reward.custom_reward_function.path=pkg://expandsearch_verl.reward"
    )


def test_the_agent_loop_yaml_is_loaded_imported_and_described(small_run, preflight):
    ctx, results = preflight(small_run(max_queries=1, topk=3, squeeze="false"), "agent-loop")
    assert [r.status for r in results] == [Status.PASS], results
    assert "protocol tags, 1 query x topk 3 per search, not squeezed, 4 turns" in results[0].detail
    assert ctx.expandsearch_loops["expandsearch_agent"].topk == 3


def test_a_bad_knob_fails_with_every_problem(small_run, preflight, write_agent_loop_yaml):
    path = write_agent_loop_yaml("bad.yaml")
    path.write_text(
        path.read_text()
        .replace("topk: 10", "topk: -3")
        .replace("max_turns: 4", "max_turns: 4\n  colour: red")
    )
    _, results = preflight(
        small_run(f"actor_rollout_ref.rollout.agent.agent_loop_config_path={path}"), "agent-loop"
    )
    assert [r.status for r in results] == [Status.FAIL]
    assert "colour" in results[0].detail and str(path) in results[0].fix
    path.write_text(path.read_text().replace("\n  colour: red", ""))
    _, results = preflight(
        small_run(f"actor_rollout_ref.rollout.agent.agent_loop_config_path={path}"), "agent-loop"
    )
    assert [r.status for r in results] == [Status.FAIL]
    assert "topk=-3: Input should be greater than 0" in results[0].detail


def test_a_missing_or_unset_yaml_fails(small_run, preflight, tmp_path):
    _, results = preflight(
        small_run(f"actor_rollout_ref.rollout.agent.agent_loop_config_path={tmp_path}/nope.yaml"),
        "agent-loop",
    )
    assert results[0].status is Status.FAIL and "expandsearch agent-loop-config" in results[0].fix
    _, results = preflight(
        small_run("actor_rollout_ref.rollout.agent.agent_loop_config_path=null"), "agent-loop"
    )
    assert results[0].status is Status.FAIL and "not set" in results[0].detail


def test_a_relative_yaml_path_warns(small_run, preflight, write_agent_loop_yaml, monkeypatch):
    path = write_agent_loop_yaml()
    monkeypatch.chdir(path.parent)
    _, results = preflight(
        small_run(f"actor_rollout_ref.rollout.agent.agent_loop_config_path={path.name}"), "agent-loop"
    )
    assert [r.status for r in results] == [Status.WARN, Status.PASS]
    assert "relative" in results[0].detail


def test_an_unimportable_target_fails(small_run, preflight, tmp_path):
    path = tmp_path / "loops.yaml"
    path.write_text("- name: expandsearch_agent\n  _target_: no_such_package.Loop\n")
    _, results = preflight(
        small_run(f"actor_rollout_ref.rollout.agent.agent_loop_config_path={path}"), "agent-loop"
    )
    assert results[0].status is Status.FAIL and "no_such_package" in results[0].detail


def test_a_self_registering_loop_is_refused(small_run, preflight, tmp_path, monkeypatch, request):
    """verl 0.9.1 pitfall: @register(name) on the YAML's class replaces the YAML's settings in the workers."""
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    (tmp_path / "selfreg_loop.py").write_text(
        textwrap.dedent("""
        from verl.experimental.agent_loop.agent_loop import AgentLoopBase, register

        @register("selfreg_agent")
        class SelfRegisteringLoop(AgentLoopBase):
            async def run(self, sampling_params, **kwargs):
                raise NotImplementedError
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: _agent_loop_registry.pop("selfreg_agent", None))
    path = tmp_path / "loops.yaml"
    path.write_text("- name: selfreg_agent\n  _target_: selfreg_loop.SelfRegisteringLoop\n  topk: 3\n")
    _, results = preflight(
        small_run(f"actor_rollout_ref.rollout.agent.agent_loop_config_path={path}"), "agent-loop"
    )
    assert results[0].status is Status.FAIL and "@register" in results[0].detail


def test_observations_that_can_fill_the_response_budget_warn(small_run, preflight):
    _, results = preflight(
        small_run("data.max_response_length=1024", max_observation_tokens=512), "agent-loop"
    )
    assert [r.status for r in results] == [Status.PASS, Status.WARN]
    assert "3 observations of up to 512 tokens" in results[1].detail
