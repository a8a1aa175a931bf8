"""A deterministic teacher that writes `tags`-protocol turns for the format warm start.

It stands where the policy stands in the agent loop (`generate`: token ids in, token ids out) and
knows its row's question and gold answer. Its turns, cut as an engine cuts them (after the token
that completes a stop string, at `max_tokens`):

1. a short think and a search of up to three variants of the question: the question itself, its
   keyword form (stop words and punctuation dropped) and the longest capitalised name in it;
2. multi-hop rows only (unless turned off): a second search, for the other name of a comparison
   ("X or Y") or, for a bridge question, the first name read that shares no word with the question;
3. the gold answer: `<think>The answer is {gold}.</think>\\n<answer> {gold} </answer>`.

Two styles per row vary the think's wording and the variants' order, so the policy learns the
format rather than one sentence. Nothing here is sampled: the same row gives the same turns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from retriever_server.scripted.policy import engine_cut

STYLES = (0, 1)
MULTI_HOP = frozenset({"hotpotqa", "2wikimultihopqa", "musique", "bamboogle"})
STOP_WORDS = frozenset({
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "from", "by", "with", "and", "or", "is", "are",
    "was", "were", "be", "been", "who", "whom", "whose", "what", "which", "when", "where", "why", "how",
    "did", "do", "does", "that", "this", "these", "those", "it", "its", "as", "into", "than", "then",
    "there", "their", "his", "her", "name", "named",
})  # fmt: skip
_WORD = re.compile(r"[\w'’.-]+")
_CONNECTORS = frozenset({"of", "the", "de", "da", "von", "van"})  # inside a name: Bank of England
_QUESTION_WORDS = frozenset({
    "Who", "What", "Which", "When", "Where", "Why", "How", "In", "The", "Is", "Are", "Was", "Were", "Did",
    "Do", "Does", "Has", "Have", "She", "He", "It", "They", "Each", "This", "That", "Its", "His", "Her",
})  # fmt: skip
_DOC_TITLE = re.compile(r"\(Title: ([^)\n]*)\)")
_LINE_TITLE = re.compile(r"^([^:\n]{2,60}): ", re.MULTILINE)
_THINK_SEARCH = ("I will search for the key facts.", "Let me look this up.")
_THINK_SECOND = ("Now I need to know more about {name}.", "I should also search {name}.")


def keyword_form(question: str) -> str:
    """The question without stop words and punctuation: `who wrote dracula` -> `wrote dracula`."""
    words = re.findall(r"[\w'’-]+", question)
    return " ".join(word for word in words if word.casefold() not in STOP_WORDS)


def names_in(text: str) -> list[str]:
    """Capitalised names in `text`, in order ("Which film came out first, Titanic or Psycho?" ->
    Titanic, Psycho): runs of capitalised words, connectors such as "of" inside, no leading question
    word; a name has a letter and three characters."""
    names: list[str] = []
    run: list[str] = []
    end = 0
    for match in _WORD.finditer(text):
        word = match.group().strip(".")
        adjacent = text[end : match.start()].strip() == ""  # punctuation between words ends a name
        capital = word[:1].isupper() or word[:1].isdigit()
        if run and adjacent and (capital or word in _CONNECTORS):
            run.append(word)
        else:
            _close(run, names)
            run = [word] if capital else []
        end = match.end()
        if match.group().endswith("."):  # a sentence ends (or "Inc."): so does the name
            _close(run, names)
            run = []
    _close(run, names)
    return names


def _close(run: list[str], names: list[str]) -> None:
    while run and run[0] in _QUESTION_WORDS:
        run = run[1:]
    while run and run[-1] in _CONNECTORS:
        run = run[:-1]
    name = " ".join(run)
    if len(name) >= 3 and any(c.isalpha() for c in name):
        names.append(name)


def query_variants(question: str, style: int) -> list[str]:
    """Up to three distinct variants: the question, its keyword form, its longest name (by style, reordered)."""
    names = names_in(question)
    variants = [question.strip().rstrip("?").strip(), keyword_form(question), max(names, key=len, default="")]
    if style == 1:
        variants = [variants[1], variants[2], variants[0]]
    seen: set[str] = set()
    unique = []
    for variant in variants:
        if variant and variant.casefold() not in seen:
            seen.add(variant.casefold())
            unique.append(variant)
    return unique


def second_search(question: str, observation: str) -> str | None:
    """The name a multi-hop row searches next: a comparison's other name, else a name read that shares
    no word with the question: a document's title (`(Title: X)`, or a summary line's `X: ...`)
    first, then a name of several words, then one of a single word (it can be a mere adjective)."""
    names = names_in(question)
    if len(names) >= 2:
        longest = max(names, key=len)
        return next(name for name in names if name != longest)
    titles = [*_DOC_TITLE.findall(observation), *_LINE_TITLE.findall(observation)]
    read = names_in(observation)
    candidates = [*titles, *(n for n in read if " " in n), *(n for n in read if " " not in n)]
    asked = _words(question)
    return next((n for n in candidates if n[:1].isalpha() and not asked & _words(n)), None)


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


@dataclass(frozen=True)
class TeacherRow:
    """What the teacher knows about one trajectory."""

    data_source: str
    question: str
    answer: str
    style: int

    @property
    def multi_hop(self) -> bool:
        return self.data_source in MULTI_HOP


class Teacher:
    """`LLMServerClient.generate` for one trajectory: the teacher's next turn, as an engine returns it."""

    def __init__(self, tokenizer: Any, row: TeacherRow, second_search: bool = True):
        self.tokenizer, self.row, self.second_search = tokenizer, row, second_search
        self.searches = 0

    def turn_text(self, context: str) -> str:
        row = self.row
        if self.searches == 0:
            self.searches += 1
            queries = "\n".join(query_variants(row.question, row.style))
            return f"<think>{_THINK_SEARCH[row.style]}</think>\n<search>\n{queries}\n</search>"
        observation = context.rsplit("<information>", 1)[-1]
        again = row.multi_hop and self.second_search and self.searches == 1
        name = second_search(row.question, observation) if again else None
        if name is not None:
            self.searches += 1
            think = _THINK_SECOND[row.style].format(name=name)
            rest = [
                word for word in keyword_form(row.question).split() if word.casefold() not in _words(name)
            ]
            keywords = " ".join(rest[:4])
            return f"<think>{think}</think>\n<search>\n{name}\n{name} {keywords}\n</search>"
        return f"<think>The answer is {row.answer}.</think>\n<answer> {row.answer} </answer>"

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> Any:
        from verl.workers.rollout.replica import TokenOutput

        context = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        ids = self.tokenizer.encode(self.turn_text(context), add_special_tokens=False)
        ids, _ = engine_cut(self.tokenizer, ids, list(sampling_params.get("stop") or []))
        return TokenOutput(token_ids=ids[: sampling_params["max_tokens"]], stop_reason="completed")
