"""AgentLoopConfig: the YAML kwargs, checked all at once, and the shipped YAML that renders them."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from expandsearch_verl.agent_loop_config import shipped_path
from expandsearch_verl.config import AGENT_NAME, AGENT_TARGET, AgentLoopConfig, ConfigError


def test_shipped_yaml_is_the_rendered_defaults():
    """The file users read and the defaults in code cannot drift apart."""
    assert shipped_path().read_text() == AgentLoopConfig().to_yaml()


def test_shipped_yaml_loads_the_way_verl_loads_it():
    entries = OmegaConf.load(shipped_path())
    assert len(entries) == 1
    entry = OmegaConf.to_container(entries[0])
    assert entry.pop("name") == AGENT_NAME == "expandsearch_agent"
    assert entry.pop("_target_") == AGENT_TARGET
    assert AgentLoopConfig.from_kwargs(**entry) == AgentLoopConfig()


def test_every_field_has_a_help_line():
    for item in dataclasses.fields(AgentLoopConfig):
        assert item.metadata["help"].strip(), item.name


def test_from_kwargs_accepts_omegaconf_values_and_comma_lists():
    node = OmegaConf.create({"retriever_urls": ["http://a:1", "http://b:2"], "topk": 3})
    config = AgentLoopConfig.from_kwargs(**{key: node[key] for key in node})
    assert config.retriever_urls == ["http://a:1", "http://b:2"] and isinstance(config.retriever_urls, list)
    assert AgentLoopConfig.from_kwargs(retriever_urls="http://a:1, http://b:2").retriever_urls == [
        "http://a:1",
        "http://b:2",
    ]


def test_unknown_setting_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown agent-loop setting\(s\) \['topK'\].*'topk'"):
        AgentLoopConfig.from_kwargs(topK=3)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        AgentLoopConfig.from_kwargs(
            topk=0,
            protocol="xml",
            timeout_s="fast",
            retriever_urls=["localhost:8000"],
            max_documents=0,
            squeeze="yes",
            backoff_s=2.0,
            backoff_max_s=1.0,
            max_turns=True,
        )
    message = str(caught.value)
    for expected in [
        "topk=0: Input should be greater than 0",
        "protocol='xml': Input should be 'tags' or 'tool_call'",
        "timeout_s='fast': Input should be a valid number",
        "retriever_urls[0]='localhost:8000': String should match pattern '^https?://'",
        "max_documents=0: Input should be greater than 0",
        "squeeze='yes': Input should be a valid boolean",
        "backoff_max_s=1.0: must be >= backoff_s=2.0",
        "max_turns=True: Input should be a valid integer",
    ]:
        assert expected in message
    assert message.count("\n  - ") == 8


@pytest.mark.parametrize(
    ("assignment", "field", "value"),
    [
        ("squeeze=false", "squeeze", False),
        ("squeeze=null", "squeeze", None),
        ("topk=3", "topk", 3),
        ("timeout_s=5", "timeout_s", 5),
        (
            "retriever_urls=[http://a:8000,http://b:8000]",
            "retriever_urls",
            ["http://a:8000", "http://b:8000"],
        ),
        ("retriever_urls=http://a:8000,http://b:8000", "retriever_urls", ["http://a:8000", "http://b:8000"]),
        ("protocol=tool_call", "protocol", "tool_call"),
        ("max_documents=", "max_documents", None),
    ],
)
def test_overrides_parse_values_as_yaml(assignment: str, field: str, value: object):
    assert getattr(AgentLoopConfig().with_overrides([assignment]), field) == value


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("topk", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("top_k=3", "unknown key 'top_k'"),
        ("topk=[1", "not valid YAML"),
        ("topk=-1", "topk=-1: Input should be greater than 0"),
        ("protocol=json", "protocol='json': Input should be 'tags' or 'tool_call'"),
    ],
)
def test_bad_overrides_say_what_is_wrong(assignment: str, message: str):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        AgentLoopConfig().with_overrides([assignment])


def test_rendered_variant_round_trips():
    variant = AgentLoopConfig().with_overrides(["max_queries=1", "topk=3", "squeeze=false"])
    entry = OmegaConf.to_container(OmegaConf.create(variant.to_yaml())[0])
    del entry["name"], entry["_target_"]
    assert AgentLoopConfig.from_kwargs(**entry) == variant


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retriever_urls": []}, "retriever_urls=[]: List should have at least 1 item"),
        ({"timeout_s": float("inf")}, "timeout_s=inf: Input should be a finite number"),
        ({"max_retries": -1}, "max_retries=-1: Input should be greater than or equal to 0"),
        ({"topk": "3"}, "topk='3': Input should be a valid integer"),
    ],
)
def test_each_limit_is_named_with_the_value(kwargs: dict, message: str):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AgentLoopConfig.from_kwargs(**kwargs)
