"""verl's real AgentLoopWorker (no Ray) runs our loop over data_prep's parquet into a DataProto.

The path a training step takes on one worker: data_prep's parquet -> RLHFDataset -> collate_fn ->
DataProto -> AgentLoopWorker.generate_sequences (it loads our YAML from agent_loop_config_path and
instantiates the loop per trajectory; every search goes to the real retriever_server, `serve
--demo`, on loopback) -> each finished trajectory scored at once by verl's RewardLoopWorker with
the naive reward manager and `pkg://expandsearch_verl.reward` (verl's streaming reward) -> the
padded batch with our metrics and the reward's keys as columns.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.protocol import DataProto
from worker_harness import BATCH, PROMPT_LENGTH, RESPONSE_LENGTH, LocalActor, first_batch, trainer_config

from data_prep.cli import main as data_prep
from expandsearch_verl.config import AgentLoopConfig
from expandsearch_verl.reward import SCORE_KEYS
from expandsearch_verl.trajectory import METRIC_KEYS


def unpad(output: DataProto, row: int, generator) -> tuple[SimpleNamespace, list]:
    """Row `row` of the batch without padding, and the generate calls made for it (they start with its prompt)."""
    prompt_mask = output.batch["attention_mask"][row, :PROMPT_LENGTH].bool()
    response_mask = output.batch["attention_mask"][row, PROMPT_LENGTH:].bool()
    trajectory = SimpleNamespace(
        prompt_ids=output.batch["prompts"][row][prompt_mask].tolist(),
        response_ids=output.batch["responses"][row][response_mask].tolist(),
        response_mask=output.batch["response_mask"][row][response_mask].tolist(),
        response_logprobs=output.batch["rollout_log_probs"][row][response_mask].tolist(),
        extra_fields={key: output.non_tensor_batch[key][row] for key in METRIC_KEYS},
    )
    calls = [
        call
        for call in generator.calls
        if call.prompt_ids[: len(trajectory.prompt_ids)] == trajectory.prompt_ids
    ]
    return trajectory, calls


@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
async def test_worker_generates_a_scored_batch(
    tmp_path, chat_model_dir, demo_retriever_url, dead_url, rule_policy, check_output, protocol, capsys
):
    data_dir = tmp_path / "data"
    assert data_prep(["--output-dir", str(data_dir), "--protocol", protocol]) == 0
    loop_yaml = tmp_path / "agent_loops.yaml"
    # a dead replica first: failover must cost nothing
    settings = {"retriever_urls": [dead_url, demo_retriever_url], "max_observation_tokens": 400}
    loop_yaml.write_text(AgentLoopConfig.from_kwargs(**settings).to_yaml())
    config = trainer_config(tmp_path, chat_model_dir, data_dir, loop_yaml)

    generator = rule_policy()
    reward_worker = LocalActor(RewardLoopWorker(config))
    worker = AgentLoopWorker(config, llm_client=generator, reward_loop_worker_handles=[reward_worker])
    output = await worker.generate_sequences(first_batch(config, worker.tokenizer))

    batch = output.batch
    assert batch["prompts"].shape == (BATCH, PROMPT_LENGTH)
    assert batch["responses"].shape == batch["response_mask"].shape == (BATCH, RESPONSE_LENGTH)
    assert (
        batch["input_ids"].shape == batch["attention_mask"].shape == (BATCH, PROMPT_LENGTH + RESPONSE_LENGTH)
    )
    assert batch["rollout_log_probs"].shape == batch["rm_scores"].shape == (BATCH, RESPONSE_LENGTH)
    # the mask marks exactly the policy's tokens, padding included as 0
    assert int(batch["response_mask"].sum()) == sum(len(call.token_ids) for call in generator.calls)
    observation = (batch["response_mask"] == 0) & (batch["attention_mask"][:, PROMPT_LENGTH:] == 1)
    assert int(observation.sum()) == sum(output.non_tensor_batch["observation_tokens"])
    assert torch.all(batch["rollout_log_probs"][batch["response_mask"] == 0] == 0)

    columns = output.non_tensor_batch
    for row in range(BATCH):  # the invariants, per trajectory, on the padded batch
        trajectory, calls = unpad(output, row, generator)
        check_output(trajectory, SimpleNamespace(tokenizer=generator.tokenizer, calls=calls), RESPONSE_LENGTH)
    assert set(METRIC_KEYS) <= set(columns)
    assert list(columns["num_searches"]) == [1] * BATCH and list(columns["tool_call_counts"]) == [1] * BATCH
    assert list(columns["__num_turns__"]) == [4] * BATCH and all(n > 0 for n in columns["num_unique_docs"])
    assert all(isinstance(ids, list) and ids for ids in columns["retrieved_ids"])
    assert not any(isinstance(value, str) for key in METRIC_KEYS for value in columns[key])  # no passages
    assert np.all(columns["search_failures"] == 0)
    decoded = worker.tokenizer.decode(batch["responses"][0][batch["attention_mask"][0, PROMPT_LENGTH:] == 1])
    opening = "<information>" if protocol == "tags" else "<tool_response>"
    assert opening in decoded and "<answer>" in decoded

    # The reward saw the loop's fields: its counts are the loop's, every response is well-formed,
    # and the score sits on each response's last token.
    assert set(SCORE_KEYS) <= set(columns) and output.meta_info["reward_extra_keys"] == list(SCORE_KEYS)
    assert list(columns["num_searches"]) == [1] * BATCH and list(columns["format_ok"]) == [1.0] * BATCH
    assert list(columns["num_queries"]) == [2] * BATCH
    last = batch["attention_mask"][:, PROMPT_LENGTH:].sum(dim=1) - 1
    assert torch.equal(
        batch["rm_scores"][torch.arange(BATCH), last], torch.tensor(columns["score"], dtype=torch.float32)
    )
    assert set(columns["score"]) <= {1.0, 0.2}  # well-formed: correct, or wrong
    # the demo corpus holds every sample question's evidence: the loop's searches find it
    assert np.mean(columns["retrieval_hit"]) >= 0.5
