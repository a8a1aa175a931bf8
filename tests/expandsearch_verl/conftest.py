"""Fixtures for the agent-loop tests: the loop built as verl builds it, generators, a retriever.

- `make_loop(generator, response_length=..., **settings)`: the shipped YAML entry (with `settings`
  applied, as a user's variant file would) instantiated by hydra with exactly the arguments
  `AgentLoopWorker._run_agent_loop` passes, over verl's real composed trainer config; every output
  of its `run()` is checked against the invariants (`assert_invariants`).
- `scripted`, `rule_policy`, `hf_generator`: `LLMServerClient.generate` stand-ins (engine_doubles.py).
- `fake_retriever` / `start_retriever` / `dead_url`: docs/design.md's `POST /search` on loopback, with
  fault modes (retriever_double.py); the real server is the root conftest's `demo_retriever_url`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from expandsearch_verl import retriever_client
from expandsearch_verl.trajectory import METRIC_KEYS

sys.path.insert(0, str(Path(__file__).parent))  # the test doubles below live next to this file
from engine_doubles import HFGenerator, RecordingGenerator, RulePolicyGenerator, ScriptedGenerator
from retriever_double import FakeRetriever, free_port


@pytest.fixture(scope="session")
def _session_retriever():
    server = FakeRetriever(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def fake_retriever(_session_retriever: FakeRetriever) -> FakeRetriever:
    """A running fake retriever, reset to answer normally."""
    _session_retriever.reset()
    return _session_retriever


@pytest.fixture
def start_retriever():
    """Start extra fake retrievers (each on its own port); stopped after the test."""
    started: list[FakeRetriever] = []

    def start() -> FakeRetriever:
        started.append(FakeRetriever(free_port()).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(autouse=True)
async def _close_shared_clients():
    """Each test runs its own event loop; close the HTTP pools the loop's searches opened."""
    yield
    clients = retriever_client._clients.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()


@pytest.fixture(scope="session")
def chat_tokenizer(chat_model_dir: Path):
    return AutoTokenizer.from_pretrained(chat_model_dir)


@pytest.fixture(scope="session")
def tiny_lm(chat_model_dir: Path):
    return AutoModelForCausalLM.from_pretrained(chat_model_dir).eval()


@pytest.fixture
def scripted(chat_tokenizer):
    """`scripted(turn1, turn2, ...)` -> a `ScriptedGenerator` (test modules cannot import conftest)."""
    return lambda *turns: ScriptedGenerator(chat_tokenizer, turns=list(turns))


@pytest.fixture
def rule_policy(chat_tokenizer):
    """`rule_policy()` -> a `RulePolicyGenerator`."""
    return lambda: RulePolicyGenerator(chat_tokenizer)


@pytest.fixture
def hf_generator(chat_tokenizer, tiny_lm):
    """`hf_generator(seed)` -> an `HFGenerator` over the tiny random Qwen2."""
    return lambda seed=0: HFGenerator(chat_tokenizer, model=tiny_lm, seed=seed)


@pytest.fixture
def hf_generator_for():
    """`hf_generator_for(tokenizer, model)` -> an `HFGenerator` over any causal LM."""
    return lambda tokenizer, model, seed=0: HFGenerator(tokenizer, model=model, seed=seed)


# ------------------------------------------------------------------------------------- loop factory
@pytest.fixture(scope="session")
def verl_trainer_config(chat_model_dir: Path):
    """verl's real composed ppo_trainer config, pointed at the tiny local chat model."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(
            config_name="ppo_trainer",
            overrides=[
                "actor_rollout_ref.rollout.name=vllm",
                f"actor_rollout_ref.model.path={chat_model_dir}",
                "data.max_prompt_length=512",
                "data.max_response_length=512",
            ],
        )


@pytest.fixture
def make_loop(verl_trainer_config, chat_tokenizer, fake_retriever):
    """Build the loop from the shipped YAML with hydra, exactly as `AgentLoopWorker` does.

    Every output of its `run()` is checked against `assert_invariants` (with the generator's calls),
    so every test that runs a trajectory checks them.
    """
    import hydra
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from expandsearch_verl.agent_loop_config import shipped_path

    configs: dict[int, Any] = {}

    def make(
        generator: Any,
        *,
        response_length: int = 512,
        tokenizer: Any = None,
        hf_model_type: str = "qwen2",
        **settings: Any,
    ):
        config = configs.get(response_length)
        if config is None:
            config = configs[response_length] = OmegaConf.create(
                OmegaConf.to_container(verl_trainer_config, resolve=True)
            )
            config.actor_rollout_ref.rollout.response_length = response_length
        entry = OmegaConf.load(shipped_path())[0]
        entry.retriever_urls = [fake_retriever.url]
        for key, value in settings.items():
            entry[key] = value
        loop = hydra.utils.instantiate(
            config=entry,
            trainer_config=DictConfigWrap(config=config),
            server_manager=generator,
            tokenizer=tokenizer or chat_tokenizer,
            processor=None,
            hf_model_type=hf_model_type,
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(config.data),
            tools=ToolListWrap([]),
        )
        run = loop.run

        async def checked_run(sampling_params: dict[str, Any], **kwargs: Any):
            output = await run(sampling_params, **kwargs)
            assert_invariants(output, generator, response_length)
            return output

        loop.run = checked_run
        return loop

    return make


SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}


def prompt(question: str = "Where is the Eiffel Tower?", protocol: str = "tags") -> dict[str, Any]:
    """`run()` kwargs for one dataset row, as `RLHFDataset` + `AgentLoopWorker` pass them."""
    return {
        "raw_prompt": [
            {"role": "system", "content": "Answer with search."},
            {"role": "user", "content": question},
        ],
        "extra_info": {"index": 0, "split": "train", "id": "q0", "question": question, "protocol": protocol},
        "data_source": "nq",
        "index": 0,
        "tools_kwargs": {},
    }


@pytest.fixture
def run_kwargs():
    return prompt


# --------------------------------------------------------------------------------------- invariants
def assert_invariants(output: Any, generator: RecordingGenerator, response_length: int) -> None:
    """What every output must satisfy, whatever the model wrote.

    `generator.calls` must be this trajectory's calls only, in order.
    """
    ids, mask, logprobs = list(output.response_ids), list(output.response_mask), output.response_logprobs
    assert len(ids) == len(mask) <= response_length
    assert set(mask) <= {0, 1}
    generated = [token for call in generator.calls for token in call.token_ids]
    model_ids = [token for token, m in zip(ids, mask, strict=True) if m == 1]
    # Every mask-1 token is the model's, in order, and nothing the model sampled is masked out
    # (the only loss is at the end, where the response was cut to response_length).
    assert model_ids == generated[: len(model_ids)]
    if len(ids) < response_length:
        assert len(model_ids) == len(generated)
    tokenizer = generator.tokenizer
    assert tokenizer.decode(model_ids) == tokenizer.decode(generated[: len(model_ids)])
    # Observation tokens: mask 0, log-prob 0.0; model tokens keep the engine's log-probs.
    if logprobs is None:
        assert not any(call.sampling_params.get("logprobs") for call in generator.calls)
    else:
        logprobs = list(logprobs)
        assert len(logprobs) == len(ids)
        generated_logprobs = [lp for call in generator.calls for lp in call.log_probs]
        model_logprobs = [lp for lp, m in zip(logprobs, mask, strict=True) if m == 1]
        assert model_logprobs == pytest.approx(generated_logprobs[: len(model_ids)])
        assert all(lp == 0.0 for lp, m in zip(logprobs, mask, strict=True) if m == 0)
    # Each turn saw exactly the tokens of the trajectory so far: nothing was re-encoded.
    full = list(output.prompt_ids) + ids
    for call in generator.calls:
        assert call.prompt_ids == full[: len(call.prompt_ids)]
        assert call.sampling_params["max_tokens"] == response_length - (
            len(call.prompt_ids) - len(output.prompt_ids)
        )
    assert set(METRIC_KEYS) <= set(output.extra_fields)
    assert output.extra_fields["observation_tokens"] == mask.count(0)


@pytest.fixture
def check_output():
    """`check_output(output, generator, response_length)` for outputs not made by `make_loop`."""
    return assert_invariants


def inserted_runs(tokenizer: Any, output: Any) -> list[str]:
    """The decoded runs of mask-0 tokens (observations, scaffold), special tokens kept, in order."""
    runs, current = [], []
    for token, mask in zip([*output.response_ids, -1], [*output.response_mask, 1], strict=True):
        if mask == 0:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current, skip_special_tokens=False))
            current = []
    return runs


@pytest.fixture
def observations(chat_tokenizer):
    """`observations(output)` -> the decoded runs of mask-0 tokens."""
    return lambda output, tokenizer=chat_tokenizer: inserted_runs(tokenizer, output)
