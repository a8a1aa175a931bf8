"""`ExpandSearchAgentLoop`: the multi-turn ExpandSearch rollout that verl runs for every trajectory.

The algorithm (each step is numbered the same way in `run`):
  1. Render the prompt with the chat template (`tool_call`: the `search` tool schema listed in it).
  2. For each turn, up to `max_turns`:
     a. generate until an action's closing tag, with `max_tokens` = the remaining response budget;
        the sampled tokens go in with mask 1 and their log-probs;
     b. decode those tokens (never re-encode the model's text) and parse the action;
     c. stop at `<answer>`, when the budget is spent, or at the last turn (a search written in the
        last turn is not run: no turn would be left to read its result);
     d. send every query variant of the turn in one `/search` call (a failure becomes a message);
     e. append the observation with mask 0 and log-prob 0.0: the squeezer's summary, or the fused
        documents cut at document boundaries to `max_observation_tokens`, after any notes (what was
        wrong with the action; before the last turn, that no search is left). `tags` wraps it in
        `<information>`; `tool_call` appends it as a chat `tool` message through verl's
        continuous-token builder, so the template's scaffold tokens are exact. If it would leave no
        room to generate, the trajectory ends there instead.
  3. Return at most `response_length` tokens, and the search metrics in `extra_fields` (numbers:
     the retrieval hit is decided at each search against the row's gold answers).

What we changed against the references: every turn that neither answers nor searches properly gets
feedback and the trajectory goes on (Search-R1 does; verl's ToolAgentLoop ends silently); all
variants go in one request with retries and failover; observations are cut at document boundaries
(Search-R1 cuts tokens mid-document, ferret characters mid-document).

Register it through the YAML shipped next to this file (`expandsearch agent-loop-config` prints its
path), never with verl's `@register` decorator: it would overwrite the YAML's arguments.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput
from verl.utils.profiler import simple_timer
from verl.utils.rollout_trace import rollout_trace_op

from expandsearch_verl.config import AGENT_NAME, AgentLoopConfig
from expandsearch_verl.observation import Observation, format_observation, tags_ids
from expandsearch_verl.protocols import (
    PROTOCOLS,
    SEARCH_TOOL_NAME,
    STOP_STRINGS,
    Action,
    QueryLimits,
    parse_action,
    search_tool_schema,
    usage,
)
from expandsearch_verl.qa_metrics import golden_answers, normalized_golds
from expandsearch_verl.retriever_client import SearchError, SearchResult, shared_client
from expandsearch_verl.trajectory import Trajectory

logger = logging.getLogger(__name__)
logger.setLevel(os.environ.get("EXPANDSEARCH_LOGGING_LEVEL", "WARNING").upper())

LAST_TURN_NOTICE = "No search is left: the next turn is the last, write your final <answer> there."
_warned_protocols: set[tuple[str, str]] = set()


class ExpandSearchAgentLoop(AgentLoopBase):
    """Multi-query search turns for verl 0.9.1; the YAML's keys are `AgentLoopConfig` fields."""

    def __init__(
        self,
        trainer_config: Any,
        server_manager: Any,
        tokenizer: Any,
        processor: Any,
        dataset_cls: Any,
        data_config: Any,
        hf_model_type: str | None = None,
        *,
        tools: Any = None,  # verl's tool list (multi_turn.tool_config_path); this loop has its own tool
        name: str = AGENT_NAME,  # the YAML entry's name, passed along by hydra
        **settings: Any,
    ):
        super().__init__(
            trainer_config,
            server_manager,
            tokenizer,
            processor,
            dataset_cls,
            data_config,
            hf_model_type=hf_model_type,
        )
        self.settings = AgentLoopConfig.from_kwargs(**settings)
        self.limits = QueryLimits(self.settings.max_queries, self.settings.max_query_chars)
        self.response_length = int(self.rollout_config.response_length)

    @rollout_trace_op
    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> AgentLoopOutput:
        extra_info = kwargs.get("extra_info") or {}
        protocol = self._protocol(extra_info)
        question = extra_info.get("question") if self.settings.send_question else None
        tools = [search_tool_schema(self.limits.max_queries)] if protocol == "tool_call" else None
        messages = list(kwargs["raw_prompt"])
        # One sticky session per trajectory (the engine reuses its prefix cache); verl's fixed ids
        # under full determinism.
        request_id = f"det-{priority}" if self.rollout_config.get("full_determinism") else uuid4().hex
        metrics: dict[str, Any] = {}

        # 1. The prompt, through the chat template.
        prompt_ids = await self.ct_build_initial_tokens(messages, tools=tools)
        trajectory = Trajectory(
            prompt_ids, with_logprobs=bool(sampling_params.get("logprobs")), golds=_golds(kwargs)
        )

        for turn in range(1, self.settings.max_turns + 1):
            remaining = self.response_length - len(trajectory.response_ids)
            if remaining <= 0:
                break
            # 2a. Generate one turn (mask 1).
            text = await self._generate(
                trajectory, sampling_params, protocol, remaining, request_id, priority, metrics
            )
            # 2b. Parse the action from the decoded tokens.
            action = parse_action(text, protocol, self.limits)
            # 2c. Stop at an answer, a spent budget, or the last turn.
            if action.kind == "answer" or len(trajectory.response_ids) >= self.response_length:
                break
            if turn == self.settings.max_turns:
                break
            # 2d. One /search call for all variants.
            notes = list(action.problems)
            trajectory.invalid_actions += bool(action.problems)
            result = None
            if action.kind == "search":
                with simple_timer("tool_calls", metrics):
                    result, failure = await self._search(trajectory, action.queries, question)
                if failure:
                    notes.append(f"The search failed: {failure}. You may search again or answer.")
            else:
                notes.append(usage(protocol, self.limits))
            if turn == self.settings.max_turns - 1:
                notes.append(LAST_TURN_NOTICE)
            # 2e. Append the observation (mask 0), or end if it leaves no room to generate.
            if not await self._observe(trajectory, protocol, action, notes, result, messages, tools):
                break

        # 3. At most response_length tokens, metrics for verl's logs and the reward.
        length = self.response_length
        return AgentLoopOutput(
            prompt_ids=trajectory.prompt_ids,
            response_ids=trajectory.response_ids[:length],
            response_mask=trajectory.response_mask[:length],
            response_logprobs=trajectory.response_logprobs[:length] if trajectory.with_logprobs else None,
            num_turns=1 + trajectory.assistant_turns + trajectory.observation_turns,
            metrics=metrics,
            extra_fields=trajectory.extra_fields(length),
        )

    def _protocol(self, extra_info: dict[str, Any]) -> str:
        """The row's protocol (its prompt taught it) when it names one, else the YAML's."""
        row_protocol = extra_info.get("protocol")
        if row_protocol not in PROTOCOLS:
            return self.settings.protocol
        if (
            row_protocol != self.settings.protocol
            and (row_protocol, self.settings.protocol) not in _warned_protocols
        ):
            _warned_protocols.add((row_protocol, self.settings.protocol))
            logger.warning(
                "parquet rows use protocol %r while the agent-loop YAML says %r; following the rows",
                row_protocol,
                self.settings.protocol,
            )
        return row_protocol

    async def _generate(
        self,
        trajectory: Trajectory,
        sampling_params: dict[str, Any],
        protocol: str,
        remaining: int,
        request_id: str,
        priority: int,
        metrics: dict[str, Any],
    ) -> str:
        """One generation call; appends the sampled tokens and returns their decoded text."""
        params = {
            **sampling_params,
            "stop": [*(sampling_params.get("stop") or []), *STOP_STRINGS[protocol]],
            "max_tokens": remaining,
        }
        with simple_timer("generate_sequences", metrics):
            output = await self.server_manager.generate(
                request_id=request_id,
                prompt_ids=trajectory.prompt_ids + trajectory.response_ids,
                sampling_params=params,
                priority=int(priority),
            )
        if "num_preempted" not in metrics:  # -1 = the engine does not report it (verl's convention)
            metrics["num_preempted"] = -1 if output.num_preempted is None else output.num_preempted
        else:
            metrics["num_preempted"] += output.num_preempted or 0
        steps = output.extra_fields  # weight versions the turns were sampled with (off-policy bookkeeping)
        if trajectory.assistant_turns == 0 and steps.get("min_global_steps") is not None:
            trajectory.verl_fields["min_global_steps"] = steps["min_global_steps"]
        if steps.get("max_global_steps") is not None:
            trajectory.verl_fields["max_global_steps"] = steps["max_global_steps"]
        token_ids = list(output.token_ids[:remaining])
        trajectory.add_model_tokens(token_ids, output.log_probs)
        trajectory.assistant_turns += 1
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    async def _search(
        self, trajectory: Trajectory, queries: list[str], question: str | None
    ) -> tuple[SearchResult | None, str | None]:
        """(result, None), or (None, why it failed); counted either way."""
        started = time.perf_counter()
        try:
            result = await shared_client(self.settings).search(
                queries, question=question, squeeze=self.settings.squeeze
            )
            failure = None
        except SearchError as error:
            result, failure = None, error.reason
        trajectory.record_search(queries, result, time.perf_counter() - started)
        return result, failure

    async def _observe(
        self,
        trajectory: Trajectory,
        protocol: str,
        action: Action,
        notes: list[str],
        result: SearchResult | None,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
    ) -> bool:
        """Append the observation if it leaves room for one more generated token; False if not."""
        room = self.response_length - len(trajectory.response_ids) - 1
        budget = min(self.settings.max_observation_tokens, room)
        show_summary = result is not None and result.has_summary
        while budget > 0:
            observation = format_observation(
                notes,
                self.tokenizer,
                budget,
                summary=result.summary if show_summary else None,
                documents=result.documents if result is not None else (),
            )
            if protocol == "tags":
                added = self._append_information(trajectory, observation, room)
            else:
                content = observation.text.strip()
                added = await self._merge_tool_message(trajectory, action, content, messages, tools, room)
            if added <= room:
                trajectory.observation_turns += 1
                return True
            budget -= added - room  # the wrapper made it overflow: shrink the text by the excess
        return False

    def _append_information(self, trajectory: Trajectory, observation: Observation, room: int) -> int:
        """`tags`: append the observation inside `<information>` if it fits in `room`; returns its size."""
        token_ids = tags_ids(observation, self.tokenizer)
        if len(token_ids) <= room:
            trajectory.add_inserted_tokens(token_ids)
        return len(token_ids)

    async def _merge_tool_message(
        self,
        trajectory: Trajectory,
        action: Action,
        text: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        room: int,
    ) -> int:
        """Append the observation as a chat message through verl's builder if it fits in `room`.

        The model's turn is closed first (the engine stopped at `</tool_call>`, before the
        end-of-turn token), with that token forced at mask 0. A malformed call is answered by the
        tool; a turn with no call at all by the user. Returns the number of tokens it adds.
        """
        runtime = trajectory.prompt_ids + trajectory.response_ids
        mask, logprobs = list(trajectory.response_mask), list(trajectory.response_logprobs)
        turn_end = self._turn_end_id()
        if runtime[-1] != turn_end:
            runtime.append(turn_end)
            mask.append(0)
            logprobs.append(0.0)
        assistant: dict[str, Any] = {"role": "assistant", "content": action.content}
        if action.tool_call is not None:
            assistant["tool_calls"] = [{"type": "function", "function": action.tool_call}]
            reply = {"role": "tool", "name": SEARCH_TOOL_NAME, "content": text}
        else:
            reply = {"role": "user", "content": text}
        previous = [*messages, assistant]
        merged, mask, logprobs = await self.ct_merge_context_msg(
            previous,
            [*previous, reply],
            runtime,
            mask,
            logprobs if trajectory.with_logprobs else None,
            tools=tools,
        )
        response_ids = merged.token_ids[len(trajectory.prompt_ids) :]
        added = len(response_ids) - len(trajectory.response_ids)
        if added <= room:
            trajectory.replace_response(response_ids, mask, logprobs)
            messages[:] = [*previous, reply]
        return added

    def _turn_end_id(self) -> int:
        """The token that ends a chat turn: ChatML's `<|im_end|>` when the vocabulary has it, else EOS."""
        token_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            token_id = self.tokenizer.eos_token_id
        return token_id


def _golds(row: dict[str, Any]) -> list[str]:
    """The row's normalised gold answers (none when it has no usable ground truth: the reward
    reports a malformed one; the rollout goes on)."""
    reward_model = row.get("reward_model")
    try:
        ground_truth = reward_model["ground_truth"] if isinstance(reward_model, Mapping) else None
        return normalized_golds(golden_answers(ground_truth))
    except (KeyError, ValueError):
        return []
