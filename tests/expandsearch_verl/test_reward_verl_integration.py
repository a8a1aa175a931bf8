"""The reward through verl's own call path: config loader, NaiveRewardManager, real decoding.

The responses are built token by token the way the agent loop builds them (policy tokens, then
observation tokens; for `tool_call`, the tool turn merged by verl's Qwen continuous-token builder),
decoded by NaiveRewardManager with skip_special_tokens, with the dataset's extra_info merged with
the loop's extra fields, and reward_kwargs from the composed hydra config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from transformers import AutoConfig, AutoTokenizer
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from expandsearch_verl.reward import SCORE_KEYS

QUESTION = [
    {"role": "system", "content": "Answer the question."},
    {"role": "user", "content": "Who designed the Eiffel Tower?"},
]
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
GOLD = {"target": np.array(["Gustave Eiffel"], dtype=object)}
PASSAGES = [
    "Eiffel Tower\nThe tower was designed by the company of Gustave Eiffel.",
    "Paris\nCapital of France.",
]


@pytest.fixture(scope="module")
def reward_config():
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(
            config_name="ppo_trainer",
            overrides=[
                "actor_rollout_ref.rollout.name=vllm",
                "reward.custom_reward_function.path=pkg://expandsearch_verl.reward",
                "+reward.custom_reward_function.reward_kwargs.wrong_well_formed=0.3",
            ],
        )


@pytest.fixture(scope="module")
def tokenizer(chat_model_dir: Path):
    return AutoTokenizer.from_pretrained(chat_model_dir)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def tags_rollout(tokenizer, answer: str) -> tuple[list[int], list[int]]:
    """(prompt_ids, response_ids): policy turns and the loop's observation, as raw text tokens."""
    prompt_ids = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    prompt_ids = encode(tokenizer, prompt_ids)
    response_ids = encode(
        tokenizer, "<think>I should look it up.</think>\n<search>eiffel tower designer</search>"
    )
    response_ids += encode(
        tokenizer,
        "\n\n<information>Doc 1 (Title: Eiffel Tower) Designed by Gustave Eiffel.</information>\n\n",
    )
    response_ids += encode(tokenizer, f"<think>Found it.</think>\n<answer>{answer}</answer>")
    response_ids.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return prompt_ids, response_ids


def tool_call_rollout(tokenizer, chat_model_dir: Path, answer: str) -> tuple[list[int], list[int]]:
    """(prompt_ids, response_ids) with the tool turn merged by verl's continuous-token builder."""
    model_type = AutoConfig.from_pretrained(chat_model_dir).model_type
    builder = create_continuous_token_builder(tokenizer, hf_model_type=model_type)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompt_ids = builder.build_initial_tokens(QUESTION, tools=TOOLS)
    call = json.dumps(
        {"name": "search", "arguments": {"query_list": ["eiffel tower designer", "who built it"]}}
    )
    turn = f"<think>I should look it up.</think>\n<tool_call>\n{call}\n</tool_call>"
    runtime = builder.merge_assistant_tokens(prompt_ids, [*encode(tokenizer, turn), im_end]).token_ids
    before = [*QUESTION, {"role": "assistant", "content": turn}]
    after = [*before, {"role": "tool", "content": "The tower was designed by Eiffel's company."}]
    runtime = builder.merge_context_tokens(before, after, runtime, tools=TOOLS).token_ids
    final = encode(tokenizer, f"<think>Found it.</think>\n<answer>{answer}</answer>")
    runtime = builder.merge_assistant_tokens(runtime, [*final, im_end]).token_ids
    return prompt_ids, runtime[len(prompt_ids) :]


def as_data_proto(tokenizer, rollouts, extra_infos, loop_fields) -> list[DataProto]:
    """One DataProto per trajectory, shaped like AgentLoopWorker._compute_score builds them."""
    protos = []
    for (prompt_ids, response_ids), extra_info, fields in zip(
        rollouts, extra_infos, loop_fields, strict=True
    ):
        pad = 8  # right padding after the response, masked out
        responses = torch.tensor([response_ids + [tokenizer.pad_token_id] * pad])
        mask = torch.tensor([[1] * (len(prompt_ids) + len(response_ids)) + [0] * pad])
        protos.append(
            DataProto.from_dict(
                tensors={
                    "prompts": torch.tensor([prompt_ids]),
                    "responses": responses,
                    "attention_mask": mask,
                },
                non_tensors={
                    "data_source": np.array(["nq"], dtype=object),
                    "reward_model": np.array([{"style": "rule", "ground_truth": GOLD}], dtype=object),
                    "extra_info": np.array([extra_info], dtype=object),
                    "tool_extra_fields": np.array([fields], dtype=object),
                    "__num_turns__": np.array([4]),
                },
            )
        )
    return protos


async def test_reward_through_verl_loader_and_naive_reward_manager(reward_config, tokenizer, chat_model_dir):
    compute_score = get_custom_reward_fn(reward_config)
    manager = NaiveRewardManager(config=reward_config, tokenizer=tokenizer, compute_score=compute_score)
    rollouts = [
        tags_rollout(tokenizer, "Gustave Eiffel"),
        tags_rollout(tokenizer, "Jules Verne"),
        tool_call_rollout(tokenizer, chat_model_dir, "the Gustave Eiffel"),
        tool_call_rollout(tokenizer, chat_model_dir, "Jules Verne"),
    ]
    dataset_info = [{"index": i, "split": "test", "id": f"q{i}", "question": "Who?"} for i in range(4)]
    for info, protocol in zip(dataset_info, ["tags", "tags", "tool_call", "tool_call"], strict=True):
        info["protocol"] = protocol
    loop_fields = [
        {},  # an old dump: counts and retrieval hit come from the text
        {  # a dump of an older loop, which passed the passages on
            "num_searches": np.int64(1),
            "num_queries": np.int64(1),
            "retrieved_passages": np.array(PASSAGES[1:]),
        },
        # the loop as it is: numbers only, the hit decided at search time
        {"num_searches": 1, "num_queries": 2, "retrieval_hit": 1.0, "retrieved_ids": ["7", "9"]},
        {"num_searches": 1, "num_queries": 2, "retrieval_hit": np.float64(0.0), "retrieved_ids": ["9"]},
    ]
    results = [
        await manager.run_single(proto)
        for proto in as_data_proto(tokenizer, rollouts, dataset_info, loop_fields)
    ]

    infos = [result["reward_extra_info"] for result in results]
    # 0.3, not 0.2: wrong but well-formed, with the reward_kwargs override from the config.
    assert [result["reward_score"] for result in results] == [1.0, 0.3, 1.0, 0.3]
    assert all(tuple(info) == SCORE_KEYS for info in infos)
    assert [info["format_ok"] for info in infos] == [1.0] * 4
    assert [info["num_queries"] for info in infos] == [1, 1, 2, 2]
    assert [info["retrieval_hit"] for info in infos] == [1.0, 0.0, 1.0, 0.0]
    # AgentLoopWorker._postprocess turns each key into one batch column: all must be numeric.
    for key in SCORE_KEYS:
        assert np.array([info[key] for info in infos]).dtype.kind in "if", key


def test_decoded_tool_call_response_has_the_residue_the_reward_expects(tokenizer, chat_model_dir):
    _, response_ids = tool_call_rollout(tokenizer, chat_model_dir, "Gustave Eiffel")
    text = tokenizer.decode(response_ids, skip_special_tokens=True)
    assert (
        "</tool_call>\nuser\n<tool_response>\nThe tower was designed by Eiffel's company.\n</tool_response>\nassistant\n"
        in text
    )
    assert text.endswith("<answer>Gustave Eiffel</answer>")
