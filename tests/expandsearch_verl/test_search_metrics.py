"""Every training step logs the search metrics, through verl's real classes.

One step's rollout as the legacy RayPPOTrainer runs it: our manager, loaded from the FQN of
`agent_loop_manager_class` by verl's `load_class_from_fqn` (as `RayPPOTrainer.init_workers`),
splits data_prep's batch over verl's real AgentLoopWorker (no Ray), which runs our loop and scores
each trajectory with verl's RewardLoopWorker; the output's `meta_info["timing"]` then goes through
the trainer's own two lines (reaches `rollout_timing_taken`, `timing_metrics_logged` of
`expandsearch_verl.verl_internals`) into verl's `compute_timing_metrics`. The
six rows take three loop entries: the real demo retriever, a squeezing retriever, and a dead one
(so a third of the step's searches fail). Every expected value is computed without the loop.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from engine_doubles import RecordingGenerator
from retriever_double import SearchRequest, search_corpus
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.trainer.ppo.metric_utils import compute_timing_metrics
from verl.utils import omega_conf_to_dataclass
from verl.utils.import_utils import load_class_from_fqn
from verl.workers.config import AgentLoopConfig as VerlAgentLoopConfig
from worker_harness import BATCH, PROMPT_LENGTH, LocalActor, first_batch, trainer_config

from data_prep.cli import main as data_prep
from expandsearch_verl.config import AgentLoopConfig
from expandsearch_verl.qa_metrics import golden_answers, normalized_golds
from expandsearch_verl.retrieval_hit import answer_in_passages
from expandsearch_verl.search_metrics import (
    LOGGED_PREFIX,
    MANAGER_CLASS,
    STEP_METRIC_KEYS,
    SearchMetricsAgentLoopManager,
    search_step_metrics,
)

LOOPS = ("demo", "squeezing", "dead")  # two rows each, in batch order
TOPK = 10
SEARCHING = "<think>I should search.</think>"


def question_of(context: str) -> tuple[str, str]:
    """(the row's question, everything after it) in a decoded context."""
    question, rest = context.split("Question: ")[-1].split("<|im_end|>", 1)
    return question.strip(), rest


def hesitant(question: str) -> bool:
    return len(question.split()) % 2 == 0


def variants(question: str) -> list[str]:
    return [question, " ".join(word for word in question.split() if len(word) > 3)]


class HesitantPolicy(RecordingGenerator):
    """Rows whose question has an even number of words first write a turn with no action; every
    row then searches two phrasings of its question once and answers with the last title it read."""

    def _sample(self, prompt_ids, sampling_params):
        question, trajectory = question_of(self.tokenizer.decode(prompt_ids, skip_special_tokens=False))
        if hesitant(question) and "<think>" not in trajectory:
            return self._emit("<think>Let me think first.</think>", sampling_params)
        if SEARCHING not in trajectory:  # (the loop's feedback on a turn without action shows <search> too)
            search = "<search>" + "\n".join(variants(question)) + "</search>"
            return self._emit(SEARCHING + search, sampling_params)
        titles = re.findall(r"Title: ([^)]*)\)", trajectory)
        answer = titles[-1] if titles else "unknown"
        return self._emit(f"<think>Found it.</think><answer> {answer} </answer>", sampling_params)


def write_loops(path: Path, settings: dict[str, dict]) -> Path:
    """One agent-loop YAML with an entry per name (the rows pick one by agent_name)."""
    entries = []
    for name, values in settings.items():
        [entry] = yaml.safe_load(AgentLoopConfig.from_kwargs(**values).to_yaml())
        entries.append({**entry, "name": name})
    path.write_text(yaml.safe_dump(entries))
    return path


def retrieved(loop: str, queries: list[str], demo_url: str) -> list[dict]:
    """The documents the loop's search returns, asked directly of the same retriever."""
    if loop == "dead":
        return []
    if loop == "squeezing":
        return search_corpus(SearchRequest(queries=queries, topk=TOPK, squeeze=True))["documents"]
    response = httpx.post(f"{demo_url}/search", json={"queries": queries, "topk": TOPK, "squeeze": False})
    response.raise_for_status()
    return response.json()["documents"]


def stats(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values))}


def test_a_batch_from_another_loop_adds_nothing():
    assert search_step_metrics({"__num_turns__": np.array([2, 3])}) == {}


async def test_every_search_metric_reaches_the_step_metrics(
    tmp_path, chat_model_dir, chat_tokenizer, demo_retriever_url, fake_retriever, dead_url
):
    data_dir = tmp_path / "data"
    assert data_prep(["--output-dir", str(data_dir)]) == 0
    loop_yaml = write_loops(
        tmp_path / "agent_loops.yaml",
        {
            "demo": {"retriever_urls": [demo_retriever_url], "squeeze": False, "topk": TOPK},
            "squeezing": {"retriever_urls": [fake_retriever.url], "squeeze": True, "topk": TOPK},
            "dead": {"retriever_urls": [dead_url], "max_retries": 0, "topk": TOPK},
        },
    )
    knob = f"+actor_rollout_ref.rollout.agent.agent_loop_manager_class={MANAGER_CLASS}"
    config = trainer_config(tmp_path, chat_model_dir, data_dir, loop_yaml, overrides=(knob,))
    # what RayPPOTrainer.init_workers does with the knob (reaches manager_class_knob, manager_class_load)
    agent_config = omega_conf_to_dataclass(config.actor_rollout_ref.rollout.agent)
    assert isinstance(agent_config, VerlAgentLoopConfig)
    manager_class = load_class_from_fqn(agent_config.agent_loop_manager_class, "AgentLoopManager")
    assert manager_class is SearchMetricsAgentLoopManager

    policy = HesitantPolicy(chat_tokenizer)
    reward_worker = [LocalActor(RewardLoopWorker(config))]
    manager = manager_class(config, llm_client=policy, reward_loop_worker_handles=reward_worker)
    worker = AgentLoopWorker(config, llm_client=policy, reward_loop_worker_handles=reward_worker)
    manager.agent_loop_workers = [LocalActor(worker)]  # what manager.create() makes as Ray actors
    batch = first_batch(config, worker.tokenizer)
    rows = [loop for loop in LOOPS for _ in range(BATCH // len(LOOPS))]
    batch.non_tensor_batch["agent_name"] = np.array(rows, dtype=object)
    output = await manager.generate_sequences(batch)

    # the trainer's step: timing_raw takes the manager's timing, compute_timing_metrics logs it
    timing_raw = {"gen": 1.0}
    timing_raw.update(output.meta_info["timing"])
    logged = compute_timing_metrics(batch=output, timing_raw=timing_raw)
    step = {key[len(LOGGED_PREFIX) :]: value for key, value in logged.items() if "/search/" in key}
    assert sorted(step) == sorted(STEP_METRIC_KEYS)
    assert logged["timing_s/agent_loop/tool_calls/mean"] > 0  # verl's own entries are still there

    # expected values, from the policy, the tensors and the retrievers asked directly
    questions = [
        question_of(worker.tokenizer.decode(ids, skip_special_tokens=False))[0]
        for ids in output.batch["prompts"]
    ]
    hesitant_rows = [hesitant(question) for question in questions]
    assert 0 < sum(hesitant_rows) < BATCH  # the data_prep sample mixes both kinds
    documents = [
        retrieved(loop, variants(q), demo_retriever_url) for loop, q in zip(rows, questions, strict=True)
    ]
    golds = [
        normalized_golds(golden_answers(row["ground_truth"]))
        for row in batch.non_tensor_batch["reward_model"]
    ]
    hits = [
        answer_in_passages(gold, [f"{d['title']}\n{d['text']}" for d in docs])
        for gold, docs in zip(golds, documents, strict=True)
    ]
    assert any(hits[:2])  # the demo corpus holds the sample questions' evidence
    attention = output.batch["attention_mask"][:, PROMPT_LENGTH:] == 1
    observation_tokens = ((output.batch["response_mask"] == 0) & attention).sum(dim=1).tolist()
    expected = {
        **{f"search/searches/{s}": v for s, v in stats([1] * BATCH).items()},
        **{f"search/queries/{s}": v for s, v in stats([len(set(variants(q))) for q in questions]).items()},
        **{f"search/failures/{s}": v for s, v in stats([loop == "dead" for loop in rows]).items()},
        **{f"search/squeeze_fallbacks/{s}": v for s, v in stats([0] * BATCH).items()},
        **{f"search/invalid_actions/{s}": v for s, v in stats(hesitant_rows).items()},
        **{f"search/observation_tokens/{s}": v for s, v in stats(observation_tokens).items()},
        **{f"search/unique_docs/{s}": v for s, v in stats([len(docs) for docs in documents]).items()},
        "search/retrieval_hit/mean": float(np.mean(hits)),
        "search/queries_per_search": float(np.mean([len(set(variants(q))) for q in questions])),
        "search/failure_rate": 2 / 6,
        "search/squeezed_fraction": 2 / 4,  # of the 4 searches that succeeded, the squeezing loop's 2
    }
    assert step.pop("search/latency_ms") > 0
    assert step == pytest.approx(expected)
    # the reward read the hit the loop decided
    rewards = output.non_tensor_batch["reward_extra_info"]
    assert [info["retrieval_hit"] for info in rewards] == [float(hit) for hit in hits]
