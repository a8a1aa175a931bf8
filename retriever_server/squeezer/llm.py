"""A squeezer that asks a chat LLM: context -> prompt -> completion (shared by `openai` and `hf`).

1. keep the unique passages, best first, that fit `--squeezer-context-tokens` (context.py);
2. render the system and user messages from the prompt file (prompt.py);
3. ask the chat model for at most `--squeezer-max-tokens` tokens, greedily (temperature 0);
4. an empty answer is a failure (the caller falls back to the passages), not a summary.
"""

from __future__ import annotations

from typing import Protocol

from retriever_server.index.corpus import Passage
from retriever_server.squeezer import SqueezeError
from retriever_server.squeezer.context import TokenCounter, select_passages
from retriever_server.squeezer.prompt import PromptTemplate


class ChatModel(Protocol):
    model: str
    count_tokens: TokenCounter  # tokens of a text, as this model counts them (or an estimate)

    async def complete(self, messages: list[dict]) -> str:
        """The assistant's answer to `messages` (greedy, capped at the max_tokens it was built with)."""
        ...

    async def aclose(self) -> None: ...


class LLMSqueezer:
    def __init__(self, name: str, chat: ChatModel, prompt: PromptTemplate, context_tokens: int):
        self.name = name
        self.chat = chat
        self.model = chat.model
        self.prompt = prompt
        self.prompt_id = prompt.identity
        self.context_tokens = context_tokens

    async def squeeze(self, queries: list[str], documents: list[Passage], question: str | None) -> str:
        passages = select_passages(documents, self.context_tokens, self.chat.count_tokens)  # 1
        messages = self.prompt.render(queries, question, passages)  # 2
        summary = (await self.chat.complete(messages)).strip()  # 3
        if not summary:  # 4
            raise SqueezeError(f"{self.name} squeezer {self.model!r} returned an empty summary")
        return summary

    async def aclose(self) -> None:
        await self.chat.aclose()
