"""The prompt file: shipped wording, user files, and clear errors for broken ones."""

from __future__ import annotations

import pytest

from retriever_server.squeezer.prompt import DEFAULT_PROMPT, PromptTemplate


def test_shipped_prompt_renders_queries_question_and_passages(make_passage):
    prompt = PromptTemplate.load()
    system, user = prompt.render(["who wrote it", "author"], "Who wrote Dracula?", [make_passage(1)])
    assert (
        system["role"] == "system" and "own knowledge" in system["content"] and "\n" not in system["content"]
    )
    assert user["role"] == "user"
    assert "- who wrote it\n- author\n" in user["content"] and "Who wrote Dracula?" in user["content"]
    assert "[1] Title 1\nPassage 1" in user["content"]
    _, without_question = prompt.render(["q"], None, [make_passage(1)])
    assert "working on" not in without_question["content"]
    assert prompt.identity.startswith("expandsearch-squeezer-v1+")


def test_a_users_file_with_its_own_layout(tmp_path, make_passage):
    custom = tmp_path / "mine.yaml"
    custom.write_text(
        "version: mine-1\nsystem: Summarise.\nuser: |-\n  {{ queries | join(' / ') }}\n"
        "  {% for d in documents %}<doc id={{ d.id }}>{{ d.title }}: {{ d.text }}</doc>{% endfor %}\n"
    )
    prompt = PromptTemplate.load(custom)
    _, user = prompt.render(["a", "b"], None, [make_passage(7)])
    assert user["content"] == "a / b\n<doc id=7>Title 7: Passage 7 says something about topic 7.</doc>"
    edited = tmp_path / "edited.yaml"
    edited.write_text(custom.read_text().replace("Summarise.", "Summarise briefly."))
    assert PromptTemplate.load(edited).identity != prompt.identity  # same version, new text: a new cache key
    assert PromptTemplate.load(edited).identity.startswith("mine-1+")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("system: s\nuser: u\n", r"missing or empty: \['version'\]"),
        ("version: 1\nsystem: s\nuser: ''\n", r"missing or empty: \['user'\]"),
        ("version: 1\nsystem: s\nuser: u\nextra: x\n", r"unknown: \['extra'\]"),
        ("- a list\n", "must be a mapping"),
        ("version: 1\nsystem: s\nuser: '{% for q in queries %}'\n", "TemplateSyntaxError"),
        ("version: 1\nsystem: s\nuser: '{{ passage }}'\n", "UndefinedError"),
        ("version: 1\nsystem: s\nuser: [unclosed\n", "cannot read"),
    ],
)
def test_broken_files_fail_at_load_with_the_file_named(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        PromptTemplate.load(bad)
    assert "squeezer_prompt" in str(error.value)
    assert str(bad) in str(error.value) or "bad.yaml" in str(error.value)


def test_missing_file():
    with pytest.raises(ValueError, match="cannot read"):
        PromptTemplate.load("/nonexistent/prompt.yaml")
    assert DEFAULT_PROMPT.is_file()
