"""The squeezer prompt: a YAML file with `version`, `system` and `user` (Jinja2 templates).

The shipped wording is `prompt.yaml` beside this module; `--squeezer-prompt FILE` replaces it. The
file is checked when the server starts (missing keys, template syntax, unknown variables) by
rendering it once, so a broken template fails the start, not the first rollout. Its identity
(`version` plus a digest of the text) goes into the squeeze-cache key, so an edited prompt never
serves summaries written for the old one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from retriever_server.index.corpus import Passage
from retriever_server.squeezer.context import format_passages

DEFAULT_PROMPT = Path(__file__).resolve().parent / "prompt.yaml"
KEYS = ("version", "system", "user")


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    user: str
    source: str  # the file it came from, for error messages

    @classmethod
    def load(cls, path: str | Path | None = None) -> PromptTemplate:
        import yaml

        file = Path(path).expanduser() if path else DEFAULT_PROMPT
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"squeezer_prompt: cannot read {file}: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"squeezer_prompt: {file} must be a mapping with keys {list(KEYS)}")
        if isinstance(raw.get("version"), int | float) and not isinstance(raw["version"], bool):
            raw["version"] = str(raw["version"])  # `version: 2` is a version too
        bad = [key for key in KEYS if not isinstance(raw.get(key), str) or not raw[key].strip()]
        unknown = sorted(set(raw) - set(KEYS))
        if bad or unknown:
            raise ValueError(
                f"squeezer_prompt: {file} needs non-empty string keys {list(KEYS)}; "
                f"missing or empty: {bad}; unknown: {unknown}"
            )
        template = cls(str(raw["version"]), raw["system"], raw["user"], str(file))
        template.render(["a query"], "a question", [Passage("1", '"Title"\ntext', "Title", "text")])
        return template

    @property
    def identity(self) -> str:
        """`version+digest`: what the cache key records of the prompt."""
        digest = hashlib.blake2b(f"{self.system}\0{self.user}".encode(), digest_size=6).hexdigest()
        return f"{self.version}+{digest}"

    def render(self, queries: list[str], question: str | None, passages: list[Passage]) -> list[dict]:
        """Chat messages (system + user) for one squeeze."""
        from jinja2 import TemplateError

        values = {
            "queries": queries,
            "question": question,
            "passages": format_passages(passages),
            "documents": [
                {"index": i, "id": p.id, "title": p.title, "text": p.text} for i, p in enumerate(passages, 1)
            ],
        }
        try:
            system, user = (_compiled(text).render(values).strip() for text in (self.system, self.user))
        except TemplateError as exc:
            raise ValueError(f"squeezer_prompt: {self.source}: {type(exc).__name__}: {exc}") from None
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_TEMPLATES: dict[str, object] = {}


def _compiled(text: str):
    """A sandboxed Jinja2 template that fails on unknown variables, compiled once per text."""
    template = _TEMPLATES.get(text)
    if template is None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
        template = _TEMPLATES[text] = environment.from_string(text)
    return template
