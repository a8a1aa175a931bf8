"""Reward throughput: scores per second on one core over realistic multi-turn trajectories.

    python benchmarks/bench_reward.py [--samples 4000] [--repeats 5] [--cpu 0]

Trajectories are synthetic but shaped like real rollouts: 1-3 search turns, each with three query
variants; observations are a squeezer-sized summary (`tool_call`, ExpandSearch) or five raw
passages (`tags`); each search retrieves ~22 unique raw passages of ~100 words (3 variants x
top-10, de-duplicated), some with non-ASCII text, with the gold answer in about half of the
trajectories. Answers: 40 % correct, 40 % wrong, 10 % malformed, 10 % cut off.

Rows, per protocol, by what `extra_info` carries besides the row's own fields:
  agent loop       the loop's `extra_fields` (training): counts, the retrieval hit it decided at
                   search time, document ids
  old dump         an older loop's fields: counts and the raw passages (the hit is computed here)
  protocol only    nothing from the loop (rescoring a bare dump): everything from the text
verl's `search_r1_like_qa_em.compute_score` (EM only: no format, F1 or retrieval hit) runs on the
same responses in the same process, for a ratio that load on a shared machine does not move much.
A second table splits one call into its stages, and shows what deciding the hit costs the loop.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

from expandsearch_verl.qa_metrics import golden_answers, normalized_golds, score_answer
from expandsearch_verl.response_format import extract_answer, scan_response
from expandsearch_verl.retrieval_hit import answer_in_passages
from expandsearch_verl.reward import compute_score

_VOCABULARY = """
the of and in to was is for on as by with from at his that which he it an were are first new city
river war film album team season born called national known also university state later county world
played village government district company family group series league music king party church school
north south year game including released during area two three
"""
WORDS = tuple(_VOCABULARY.split())
NON_ASCII = ("Zürich", "São Paulo", "1914–1918", "Dvořák", "naïve", "Ångström", "café", "Łódź")
ANSWERS = ("Gustave Eiffel", "the Thames", "1889", "Kraków", "Marie Curie", "Mount Everest", "42", "yes")


def _sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n_words)]
    if rng.random() < 0.5:
        words[rng.randrange(n_words)] = rng.choice(NON_ASCII)
    return " ".join(words).capitalize() + "."


def _passage(rng: random.Random, gold: str | None) -> str:
    text = _sentence(rng, 100)
    if gold is not None:
        cut = rng.randrange(len(text))
        text = f"{text[:cut]} {gold}, {text[cut:]}"
    return f"{_sentence(rng, 3)[:-1]}\n{text}"


def make_trajectory(rng: random.Random, protocol: str) -> tuple[str, dict, dict, list[str]]:
    """(response, ground_truth, extra_info with the loop's fields, passages retrieved) of one rollout."""
    gold = rng.choice(ANSWERS)
    golds = [gold, *(f"{gold} {rng.choice(WORDS)}" for _ in range(rng.randrange(3)))]
    hit = rng.random() < 0.5
    turns, passages, n_queries = [], [], 0
    for _ in range(rng.randint(1, 3)):
        queries = [_sentence(rng, 6)[:-1] for _ in range(3)]
        n_queries += len(queries)
        found = [_passage(rng, gold if hit and i == 0 else None) for i in range(22)]
        passages += found
        think = f"<think>{_sentence(rng, 40)}</think>\n"
        if protocol == "tags":
            docs = "\n".join(
                f"Doc {i + 1}(Title: {p.split(chr(10))[0]}) {p.split(chr(10))[1]}"
                for i, p in enumerate(found[:5])
            )
            turns.append(
                f"{think}<search>{chr(10).join(queries)}</search>\n\n<information>{docs}</information>\n\n"
            )
        else:
            call = json.dumps({"name": "search", "arguments": {"query_list": queries}})
            summary = _sentence(rng, 100)
            turns.append(
                f"{think}<tool_call>\n{call}\n</tool_call>\nuser\n<tool_response>\n{summary}\n</tool_response>\nassistant\n"
            )
    roll = rng.random()
    answer = gold if roll < 0.4 else rng.choice(ANSWERS)
    final = f"<think>{_sentence(rng, 30)}</think>\n<answer>{answer}</answer>"
    if roll >= 0.9:  # cut off by the response length
        final = f"<think>{_sentence(rng, 30)}"
    elif roll >= 0.8:  # prose outside the tags
        final = f"{_sentence(rng, 10)}\n{final}"
    loop_golds = normalized_golds(golds)
    extra_info = {  # the row's extra_info merged with the loop's extra_fields (trajectory.py)
        "index": 0,
        "split": "test",
        "question": _sentence(rng, 12),
        "protocol": protocol,
        "num_searches": len(turns),
        "num_queries": n_queries,
        "num_unique_docs": len(passages),
        "squeezed_fraction": 1.0 if protocol == "tool_call" else 0.0,
        "search_latency_ms": 20.0,
        "observation_tokens": 400 * len(turns),
        "invalid_actions": 0,
        "search_failures": 0,
        "retrieval_hit": 1.0 if answer_in_passages(loop_golds, passages) else 0.0,
        "tool_call_counts": len(turns),
        "retrieved_ids": [str(rng.randrange(21_000_000)) for _ in passages],
        "turn_scores": [],
        "tool_rewards": [],
        "num_turns": 2 * len(turns) + 2,
    }
    return "".join(turns) + final, {"target": golds}, extra_info, passages


def _our_score(responses: list[str], truths: list[dict], infos: list[dict], i: int) -> object:
    return compute_score("nq", responses[i], truths[i], infos[i])


def _verl_score(score: Callable[..., object], responses: list[str], truths: list[dict], i: int) -> object:
    return score(responses[i], truths[i])


def rate(score_one: Callable[[int], object], args: argparse.Namespace) -> float:
    """Best-of-`args.repeats` scores per second over `args.samples` calls."""
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        for i in range(args.samples):
            score_one(i)
        best = min(best, time.perf_counter() - start)
    return args.samples / best


def stage_costs(
    responses: list[str],
    truths: list[dict],
    passages: list[list[str]],
    protocol: str,
    args: argparse.Namespace,
) -> dict:
    """Microseconds per call of each stage of compute_score, to show where the time goes."""
    golds = [normalized_golds(golden_answers(truth)) for truth in truths]
    scans = [scan_response(response, protocol) for response in responses]
    stages = {
        "scan (format, counts)": lambda i: scan_response(responses[i], protocol),
        "extract answer": lambda i: extract_answer(responses[i], protocol),
        "golds + EM/F1": lambda i: score_answer(extract_answer(responses[i], protocol), golds[i]),
        "retrieval hit, old dump's passages": lambda i: answer_in_passages(golds[i], passages[i]),
        "retrieval hit, observations": lambda i: answer_in_passages(golds[i], scans[i].observations),
        "retrieval hit at search time (in the loop, not the reward)": lambda i: answer_in_passages(
            golds[i], passages[i]
        ),
    }
    return {name: 1e6 / rate(stage, args) for name, stage in stages.items()}


def extra_infos(rollouts: list[tuple], label: str) -> list[dict]:
    """The `extra_info` of each rollout for one row of the table (module docstring)."""
    if label == "agent loop":
        return [info for _, _, info, _ in rollouts]
    if label == "old dump":
        keep = ("index", "split", "question", "protocol", "num_searches", "num_queries")
        return [
            {**{key: info[key] for key in keep}, "retrieved_passages": found}
            for _, _, info, found in rollouts
        ]
    return [{"protocol": info["protocol"]} for _, _, info, _ in rollouts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4000, help="trajectories per protocol")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes; the best is reported")
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin the process to")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    from verl.utils.reward_score import search_r1_like_qa_em

    rng = random.Random(0)
    rows, stages = [], {}
    for protocol in ("tags", "tool_call"):
        rollouts = [make_trajectory(rng, protocol) for _ in range(args.samples)]
        responses = [response for response, _, _, _ in rollouts]
        truths = [truth for _, truth, _, _ in rollouts]
        passages = [found for _, _, _, found in rollouts]
        chars = statistics.mean(map(len, responses))
        with contextlib.redirect_stdout(io.StringIO()):  # verl prints 1 sample in 64
            verl_rate = rate(
                partial(_verl_score, search_r1_like_qa_em.compute_score, responses, truths), args
            )
        for label in ("agent loop", "old dump", "protocol only"):
            infos = extra_infos(rollouts, label)
            ours = rate(partial(_our_score, responses, truths, infos), args)
            size = statistics.mean(len(json.dumps(info)) for info in infos)
            rows.append(
                f"| {protocol} | {label} | {chars:.0f} | {size:,.0f} | {ours:,.0f} | {verl_rate:,.0f} | {ours / verl_rate:.2f} |"
            )
        stages[protocol] = stage_costs(responses, truths, passages, protocol, args)

    print(
        "| protocol | extra_info | response chars | extra_info bytes (JSON) | scores/s "
        "| verl search_r1_like_qa_em scores/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| stage (us per call) | tags | tool_call |\n|---|---|---|")
    for name in stages["tags"]:
        print(f"| {name} | {stages['tags'][name]:.1f} | {stages['tool_call'][name]:.1f} |")


if __name__ == "__main__":
    main()
