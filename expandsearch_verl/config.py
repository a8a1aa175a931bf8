"""The agent loop's knobs: one typed dataclass built from the agent-loop YAML kwargs.

verl passes every key of our YAML entry (except `_target_`) to the loop's constructor; this module
turns them into an `AgentLoopConfig`, checks them all at once (`validate()` reports every problem,
each with the key, the value and the fix) and renders the shipped YAML, so the file users edit and
the defaults in code cannot drift apart (a test compares them).

Each field's `help` says what it means, its unit, and the value the papers used.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import yaml

from expandsearch_verl.protocols import PROTOCOLS

AGENT_NAME = "expandsearch_agent"
AGENT_TARGET = "expandsearch_verl.agent_loop.ExpandSearchAgentLoop"


class ConfigError(ValueError):
    """A bad agent-loop setting; the message lists every problem found."""


def _doc(text: str) -> dict[str, str]:
    """Field metadata: the one-line help rendered as the YAML comment."""
    return {"help": text}


@dataclass
class AgentLoopConfig:
    """Plugin knobs of `ExpandSearchAgentLoop`; training knobs stay in verl's hydra tree."""

    retriever_urls: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:8000"],
        metadata=_doc(
            "retriever_server base URLs; each search POSTs {url}/search, round-robin with failover"
        ),
    )
    protocol: str = field(
        default="tags",
        metadata=_doc(
            "action protocol, tags | tool_call; a parquet row's extra_info.protocol wins (it wrote the prompt)"
        ),
    )
    topk: int = field(
        default=10, metadata=_doc("documents retrieved per query (ExpandSearch code: 10; Search-R1: 3)")
    )
    max_queries: int = field(
        default=3,
        metadata=_doc(
            "query variants searched per turn; extra ones are dropped with feedback (ExpandSearch: 3; Search-R1: 1)"
        ),
    )
    max_query_chars: int = field(
        default=400,
        metadata=_doc("longest query searched, in characters; longer ones are refused with feedback"),
    )
    max_turns: int = field(
        default=4,
        metadata=_doc(
            "assistant turns (generations) per trajectory; a search in the last one is not run (ExpandSearch: 4)"
        ),
    )
    squeeze: bool | None = field(
        default=True,
        metadata=_doc(
            "ask the server to squeeze the documents into a summary; null = server default (ExpandSearch: true)"
        ),
    )
    send_question: bool = field(
        default=False,
        metadata=_doc(
            "also send the original question to the squeezer (ExpandSearch: false, it sees the queries only)"
        ),
    )
    max_documents: int | None = field(
        default=None, metadata=_doc("cap on fused documents the server returns per search; null = no cap")
    )
    max_observation_tokens: int = field(
        default=512,
        metadata=_doc(
            "token budget of one observation's text, cut at document boundaries (squeezer cap 512; Search-R1: 500)"
        ),
    )
    timeout_s: float = field(
        default=30.0, metadata=_doc("seconds one /search attempt may take (ExpandSearch tool: 30)")
    )
    connect_timeout_s: float = field(default=3.0, metadata=_doc("seconds to open a connection to a replica"))
    max_retries: int = field(
        default=3, metadata=_doc("retries after a failed attempt (timeout, connection error, 429, 5xx)")
    )
    backoff_s: float = field(
        default=0.5,
        metadata=_doc("base of the exponential backoff between retries, in seconds (full jitter)"),
    )
    backoff_max_s: float = field(
        default=8.0, metadata=_doc("longest backoff between two retries, in seconds")
    )
    max_connections: int = field(
        default=256, metadata=_doc("pooled keep-alive connections per worker process, all replicas together")
    )
    breaker_failures: int = field(
        default=3, metadata=_doc("consecutive failures that open a replica's circuit breaker")
    )
    breaker_cooldown_s: float = field(
        default=30.0, metadata=_doc("seconds an open breaker keeps a replica out before probing it again")
    )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> AgentLoopConfig:
        """Build from YAML kwargs (plain or OmegaConf values), validated; unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"unknown agent-loop setting(s) {unknown}; known settings: {sorted(known)}")
        values = {key: _plain(value) for key, value in kwargs.items()}
        if isinstance(values.get("retriever_urls"), str):
            values["retriever_urls"] = [url.strip() for url in values["retriever_urls"].split(",")]
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` listing every problem at once (key, value, what is allowed)."""
        problems, well_typed = [], set()
        for name, hint in _field_types().items():
            value = getattr(self, name)
            if _matches(value, hint):
                well_typed.add(name)
            else:
                problems.append(f"{name}={value!r}: expected {_type_name(hint)}")
        for name, requirement, holds in _RULES:
            if name in well_typed and not holds(getattr(self, name)):
                problems.append(f"{name}={getattr(self, name)!r}: {requirement}")
        if {"backoff_s", "backoff_max_s"} <= well_typed and self.backoff_max_s < self.backoff_s:
            problems.append(f"backoff_max_s={self.backoff_max_s!r}: must be >= backoff_s={self.backoff_s!r}")
        if problems:
            raise ConfigError("invalid agent-loop settings:\n  - " + "\n  - ".join(problems))

    def with_overrides(self, assignments: list[str]) -> AgentLoopConfig:
        """Apply `key=value` strings (values in YAML syntax, e.g. `squeeze=false`), validated."""
        values = dataclasses.asdict(self)
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set topk=3")
            if key not in values:
                raise ConfigError(f"--set {assignment!r}: unknown key {key!r}; known keys: {sorted(values)}")
            try:
                values[key] = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                raise ConfigError(f"--set {assignment!r}: the value is not valid YAML") from None
        return type(self).from_kwargs(**values)

    def to_yaml(self) -> str:
        """The agent-loop YAML verl loads: one list entry, every knob commented."""
        lines = [
            "# ExpandSearch agent loop for verl 0.9.1, loaded through",
            "#   actor_rollout_ref.rollout.agent.agent_loop_config_path=<absolute path of this file>",
            "# `expandsearch agent-loop-config` prints the path of the shipped copy; with --set KEY=VALUE and",
            "# --output PATH it writes a validated variant. Parquet rows pick the loop by agent_name.",
            f"- name: {AGENT_NAME}",
            f"  _target_: {AGENT_TARGET}",
        ]
        for item in dataclasses.fields(self):
            lines.append(f"  # {item.metadata['help']}")
            lines.append(f"  {item.name}: {json.dumps(getattr(self, item.name))}")
        return "\n".join(lines) + "\n"


@functools.cache
def _field_types() -> dict[str, Any]:
    """Resolved field annotations (resolving them costs more than the rest of `validate`)."""
    return get_type_hints(AgentLoopConfig)


def _positive(value: float) -> bool:
    return value > 0 and math.isfinite(value)


def _non_negative(value: float) -> bool:
    return value >= 0 and math.isfinite(value)


# (field, what is allowed, check), applied to fields of the right type.
_RULES: list[tuple[str, str, Callable[[Any], bool]]] = [
    (
        "retriever_urls",
        "give at least one URL, each starting with http:// or https://",
        lambda urls: bool(urls) and all(url.startswith(("http://", "https://")) for url in urls),
    ),
    ("protocol", f"must be one of {list(PROTOCOLS)}", lambda protocol: protocol in PROTOCOLS),
    *[
        (name, "must be > 0", _positive)
        for name in (
            "topk",
            "max_queries",
            "max_query_chars",
            "max_turns",
            "max_observation_tokens",
            "max_connections",
            "breaker_failures",
            "timeout_s",
            "connect_timeout_s",
        )
    ],
    *[
        (name, "must be >= 0", _non_negative)
        for name in (
            "max_retries",
            "backoff_s",
            "backoff_max_s",
            "breaker_cooldown_s",
        )
    ],
    ("max_documents", "must be >= 1, or null for no cap", lambda cap: cap is None or cap >= 1),
]


def _plain(value: Any) -> Any:
    """OmegaConf containers (what hydra hands the constructor) to plain Python values."""
    if hasattr(value, "_is_missing"):  # DictConfig / ListConfig, without importing omegaconf here
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def _matches(value: Any, hint: Any) -> bool:
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint == list[str]:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if hint == bool | None:
        return value is None or isinstance(value, bool)
    if hint == int | None:
        return value is None or _matches(value, int)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
