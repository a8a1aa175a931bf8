"""The agent loop's knobs: one typed dataclass built from the agent-loop YAML kwargs.

verl passes every key of our YAML entry (except `_target_`) to the loop's constructor; this module
turns them into an `AgentLoopConfig`, checks them all at once and renders the shipped YAML, so the
file users edit and the defaults in code cannot drift apart (a test compares them). Each field's
type carries its limits (pydantic's `PositiveInt`, a URL pattern, ...); `validate()` checks them with
pydantic and reports every problem at once, each with the key, the value and the limit.

Each field's `help` says what it means, its unit, and the value the papers used.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt, TypeAdapter, ValidationError, with_config

from expandsearch_verl.protocols import PROTOCOLS

AGENT_NAME = "expandsearch_agent"
AGENT_TARGET = "expandsearch_verl.agent_loop.ExpandSearchAgentLoop"


class ConfigError(ValueError):
    """A bad agent-loop setting; the message lists every problem found."""


def _doc(text: str) -> dict[str, str]:
    """Field metadata: the one-line help rendered as the YAML comment."""
    return {"help": text}


Url = Annotated[str, Field(pattern=r"^https?://")]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
ProtocolName = Literal[PROTOCOLS]


# strict: a topk of "3" or a squeeze of "yes" is a mistake in the YAML, not a value to coerce
@with_config(ConfigDict(strict=True, revalidate_instances="always"))
@dataclass
class AgentLoopConfig:
    """Plugin knobs of `ExpandSearchAgentLoop`; training knobs stay in verl's hydra tree."""

    retriever_urls: Annotated[list[Url], Field(min_length=1)] = field(
        default_factory=lambda: ["http://127.0.0.1:8000"],
        metadata=_doc(
            "retriever_server base URLs; each search POSTs {url}/search, round-robin with failover"
        ),
    )
    protocol: ProtocolName = field(
        default="tags",
        metadata=_doc(
            "action protocol, tags | tool_call; a parquet row's extra_info.protocol wins (it wrote the prompt)"
        ),
    )
    topk: PositiveInt = field(
        default=10, metadata=_doc("documents retrieved per query (ExpandSearch code: 10; Search-R1: 3)")
    )
    max_queries: PositiveInt = field(
        default=3,
        metadata=_doc(
            "query variants searched per turn; extra ones are dropped with feedback (ExpandSearch: 3; Search-R1: 1)"
        ),
    )
    max_query_chars: PositiveInt = field(
        default=400,
        metadata=_doc("longest query searched, in characters; longer ones are refused with feedback"),
    )
    max_turns: PositiveInt = field(
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
    max_documents: PositiveInt | None = field(
        default=None, metadata=_doc("cap on fused documents the server returns per search; null = no cap")
    )
    max_observation_tokens: PositiveInt = field(
        default=512,
        metadata=_doc(
            "token budget of one observation's text, cut at document boundaries (squeezer cap 512; Search-R1: 500)"
        ),
    )
    max_retrieved_passages: NonNegativeInt = field(
        default=30,
        metadata=_doc(
            "raw passages kept per trajectory in extra_fields['retrieved_passages'] for the reward's retrieval hit"
        ),
    )
    timeout_s: PositiveSeconds = field(
        default=60.0,
        metadata=_doc(
            "seconds one /search attempt may take: the server's squeeze_timeout_s (30) + 15 s, raised to that "
            "when /health says more (ExpandSearch tool: 30, which gave up just as the server fell back)"
        ),
    )
    connect_timeout_s: PositiveSeconds = field(
        default=3.0, metadata=_doc("seconds to open a connection to a replica")
    )
    max_retries: NonNegativeInt = field(
        default=3, metadata=_doc("retries after a failed attempt (timeout, connection error, 429, 5xx)")
    )
    backoff_s: NonNegativeSeconds = field(
        default=0.5,
        metadata=_doc("base of the exponential backoff between retries, in seconds (full jitter)"),
    )
    backoff_max_s: NonNegativeSeconds = field(
        default=8.0, metadata=_doc("longest backoff between two retries, in seconds")
    )
    max_connections: PositiveInt = field(
        default=256, metadata=_doc("pooled keep-alive connections per worker process, all replicas together")
    )
    breaker_failures: PositiveInt = field(
        default=3, metadata=_doc("consecutive failures that open a replica's circuit breaker")
    )
    breaker_cooldown_s: NonNegativeSeconds = field(
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
        try:
            _adapter().validate_python(self)
            errors = []
        except ValidationError as error:
            errors = error.errors(include_url=False)
        problems = [_problem(error) for error in errors]
        invalid = {error["loc"][0] for error in errors}
        if not {"backoff_s", "backoff_max_s"} & invalid and self.backoff_max_s < self.backoff_s:
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
def _adapter() -> TypeAdapter:
    """Built on first use, once per process (a Ray worker pays it once, not per trajectory)."""
    return TypeAdapter(AgentLoopConfig)


def _problem(error: dict) -> str:
    """`topk=0: Input should be greater than 0` from one of pydantic's errors."""
    key, *where = error["loc"]
    return f"{key}{''.join(f'[{part}]' for part in where)}={error['input']!r}: {error['msg']}"


def _plain(value: Any) -> Any:
    """OmegaConf containers (what hydra hands the constructor) to plain Python values."""
    if hasattr(value, "_is_missing"):  # DictConfig / ListConfig, without importing omegaconf here
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value
