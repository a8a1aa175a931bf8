"""One evaluated trajectory as a line of `trajectories.jsonl`, scored as training scores it.

The reward is `expandsearch_verl.reward.compute_score` on what verl's reward manager hands it: the
response decoded without special tokens, the row's ground truth, and the row's `extra_info` merged
with the loop's `extra_fields` and `num_turns`. A record carries (besides the row's identity):

    answer, response          the extracted answer; the decoded response (policy turns and observations)
    trajectory                the response as turns: {"role": "model" | "observation", "text", "tokens"},
                              runs of mask 1 and mask 0, decoded with special tokens kept (what the
                              model saw); observation turns are what the loss masks out
    searches, queries         the number of searches run, and the query variants each one sent
    retrieved_ids             the unique documents retrieved, first seen first
    score, em, f1, subem, ... every key of the reward (`SCORE_KEYS`)
    num_unique_docs, ...      every metric of the loop (`METRIC_KEYS`)
    generate_ms, latency_ms   each generate call's latency; the whole trajectory's
    extra_info                the row's, plus what the reward read from the loop (`num_searches`,
                              `num_queries`, `retrieval_hit`), so `expandsearch score` on the
                              file reproduces every score
"""

from __future__ import annotations

from typing import Any

from expandsearch_verl.evaluation.policy import GenerateCall
from expandsearch_verl.evaluation.rows import EvalRow
from expandsearch_verl.protocols import DEFAULT_PROTOCOL, QueryLimits, parse_action
from expandsearch_verl.response_format import extract_answer
from expandsearch_verl.reward import compute_score
from expandsearch_verl.trajectory import METRIC_KEYS

# What the reward reads from the loop's fields; kept in the record's extra_info for rescoring.
_REWARD_INPUTS = ("num_searches", "num_queries", "retrieval_hit")
_RECORDED_METRICS = tuple(key for key in METRIC_KEYS if key != "retrieved_ids")


def build_record(
    row: EvalRow,
    output: Any,
    calls: list[GenerateCall],
    *,
    tokenizer: Any,
    protocol: str,
    limits: QueryLimits,
    seconds: float,
    reward_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-ready record of one finished `run()`.

    Args:
        output: the loop's `AgentLoopOutput`.
        calls: this trajectory's generate calls, in order.
        protocol: the protocol the loop followed (the row's, else the YAML's).
        limits: the loop's query limits (the searches' queries are re-read with them).
    """
    fields = dict(output.extra_fields)
    response = tokenizer.decode(output.response_ids, skip_special_tokens=True)
    reward_extra_info = {**row.run_kwargs["extra_info"], **fields, "num_turns": output.num_turns}
    ground_truth = row.run_kwargs["reward_model"]["ground_truth"]
    scores = compute_score(
        row.data_source, response, ground_truth, reward_extra_info, **(reward_kwargs or {})
    )
    searches = int(fields["num_searches"])
    return {
        "data_source": row.data_source,
        "id": row.id,
        "question": row.question,
        "golden_answers": row.golden_answers,
        "answer": extract_answer(response, reward_extra_info.get("protocol") or DEFAULT_PROTOCOL),
        "response": response,
        "trajectory": turns(tokenizer, output.response_ids, output.response_mask),
        "searches": searches,
        "queries": searched_queries(tokenizer, calls, protocol, limits)[:searches],
        "retrieved_ids": list(fields["retrieved_ids"]),
        **scores,
        **{key: fields[key] for key in _RECORDED_METRICS},
        "protocol": protocol,
        "num_turns": output.num_turns,
        "prompt_tokens": len(output.prompt_ids),
        "response_tokens": len(output.response_ids),
        "generate_ms": [round(1000 * call.seconds, 2) for call in calls],
        "latency_ms": round(1000 * seconds, 2),
        "extra_info": {**row.run_kwargs["extra_info"], **{key: fields[key] for key in _REWARD_INPUTS}},
    }


def turns(tokenizer: Any, response_ids: list[int], response_mask: list[int]) -> list[dict[str, Any]]:
    """The response as alternating turns: model tokens (mask 1) and inserted observation tokens (mask 0)."""
    runs: list[dict[str, Any]] = []
    start = 0
    for end in range(1, len(response_ids) + 1):
        if end == len(response_ids) or response_mask[end] != response_mask[start]:
            ids = response_ids[start:end]
            role = "model" if response_mask[start] == 1 else "observation"
            runs.append(
                {"role": role, "text": tokenizer.decode(ids, skip_special_tokens=False), "tokens": len(ids)}
            )
            start = end
    return runs


def searched_queries(
    tokenizer: Any, calls: list[GenerateCall], protocol: str, limits: QueryLimits
) -> list[list[str]]:
    """The queries of each search action, read from each turn's decoded text as the loop reads it.

    The loop runs every search action it parses except one in the last turn or one that ends the
    response budget; both can only be the trajectory's last action, so the first `num_searches`
    entries are exactly the searches that ran.
    """
    actions = (
        parse_action(tokenizer.decode(call.token_ids, skip_special_tokens=True), protocol, limits)
        for call in calls
    )
    return [action.queries for action in actions if action.kind == "search"]
