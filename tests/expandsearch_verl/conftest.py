"""Fixtures for the agent-loop tests: the loop built as verl builds it, generators, a retriever.

- `make_loop(generator, response_length=..., **settings)`: the shipped YAML entry (with `settings`
  applied, as a user's variant file would) instantiated by hydra with exactly the arguments
  `AgentLoopWorker._run_agent_loop` passes, over verl's real composed trainer config.
- `ScriptedGenerator`: `LLMServerClient.generate`'s interface; replays scripted turns the way an
  engine does (stops after the token that completes a stop string, honours `max_tokens`).
- `HFGenerator`: the same interface backed by a real Hugging Face causal LM (`model.generate`).
- `fake_retriever` / `start_retriever`: DESIGN.md's `POST /search` on a loopback uvicorn server,
  over a small corpus, with fault modes (422, 500, slow, unreadable) for the client tests.
- `check_output(output, generator, response_length)`: the invariants every output must meet.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from verl.workers.rollout.replica import TokenOutput

from expandsearch_verl import retriever_client
from expandsearch_verl.trajectory import METRIC_KEYS

CORPUS = [
    {"id": "d1", "title": "Paris", "text": "Paris is the capital and largest city of France, on the Seine."},
    {"id": "d2", "title": "Eiffel Tower", "text": "The Eiffel Tower in Paris was built from 1887 to 1889."},
    {
        "id": "d3",
        "title": "Seine",
        "text": "The Seine is a river that flows through Paris into the English Channel.",
    },
    {
        "id": "d4",
        "title": "Lyon",
        "text": "Lyon is the third largest city of France, where the Rhone meets the Saone.",
    },
    {
        "id": "d5",
        "title": "Gustave Eiffel",
        "text": "Gustave Eiffel was a French engineer whose company built the tower.",
    },
    {
        "id": "d6",
        "title": "Louvre",
        "text": "The Louvre in Paris is the most visited art museum in the world.",
    },
]


# ----------------------------------------------------------------------------------------- retriever
class SearchRequest(BaseModel):
    queries: list[str]
    topk: int = 3
    question: str | None = None
    squeeze: bool | None = None
    max_documents: int | None = None


class FakeRetriever:
    """DESIGN.md's `/search` over `CORPUS` (word overlap, fused best-first), with fault modes.

    mode: "ok", "422", "500", "garbage" (200 with a body that is not a response); `delay_s` sleeps
    before answering; `fail_next` answers 503 to that many requests first.
    """

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reset()
        app = FastAPI()
        app.post("/search")(self._search)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def reset(self) -> None:
        self.mode, self.delay_s, self.fail_next, self.squeezer_error = "ok", 0.0, 0, None
        self.summary: str | None = None  # the squeezer's text; None: "Summary: " + the best two passages
        self.requests.clear()
        self.headers.clear()

    def start(self) -> FakeRetriever:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the fake retriever did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _search(self, request: SearchRequest, http: Request):
        self.requests.append(request.model_dump())
        self.headers.append(dict(http.headers))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"detail": "overloaded"}, status_code=503)
        if self.mode == "422":
            return JSONResponse({"detail": "queries[0]: longer than max_query_chars=40"}, status_code=422)
        if self.mode == "500":
            return JSONResponse({"detail": "internal error"}, status_code=500)
        if self.mode == "garbage":
            return PlainTextResponse("<html>proxy error</html>")
        return search_corpus(request, self.squeezer_error, self.summary)


def search_corpus(
    request: SearchRequest, squeezer_error: str | None = None, summary: str | None = None
) -> dict[str, Any]:
    per_query, best = [], {}
    for number, query in enumerate(request.queries):
        words = set(query.lower().split())
        scored = sorted(
            ((len(words & set(f"{d['title']} {d['text']}".lower().split())), d["id"]) for d in CORPUS),
            key=lambda item: (-item[0], item[1]),
        )[: request.topk]
        per_query.append([doc_id for _, doc_id in scored])
        for score, doc_id in scored:
            hit = best.setdefault(doc_id, {"score": 0.0, "query_hits": []})
            hit["score"] = max(hit["score"], float(score))
            hit["query_hits"].append(number)
    ranked = sorted(best, key=lambda doc_id: (-best[doc_id]["score"], doc_id))[: request.max_documents]
    by_id = {d["id"]: d for d in CORPUS}
    documents = [{**by_id[doc_id], **best[doc_id]} for doc_id in ranked]
    squeezed = bool(request.squeeze) and squeezer_error is None
    if summary is None:
        summary = "Summary: " + " ".join(d["text"] for d in documents[:2])
    return {
        "documents": documents,
        "per_query": per_query,
        "summary": summary if squeezed else None,
        "squeezed": squeezed,
        "squeeze_error": squeezer_error,
        "cached": False,
        "timings_ms": {"total": 1.0},
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def _session_retriever():
    server = FakeRetriever(_free_port()).start()
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
        started.append(FakeRetriever(_free_port()).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture(autouse=True)
async def _close_shared_clients():
    """Each test runs its own event loop; close the HTTP pools the loop's searches opened."""
    yield
    clients = retriever_client._clients.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()


# ---------------------------------------------------------------------------------------- generators
@dataclass
class GenerateCall:
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    token_ids: list[int]
    log_probs: list[float]


class RecordingGenerator:
    """Records every call, so tests can check what the loop did with the tokens.

    A plain class on purpose: hydra's `instantiate` would turn a dataclass argument into a config.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.calls: list[GenerateCall] = []

    async def generate(
        self,
        request_id: str,
        *,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: Any = None,
        video_data: Any = None,
        audio_data: Any = None,
        mm_processor_kwargs: Any = None,
        **kwargs: Any,
    ) -> TokenOutput:
        token_ids, log_probs = self._sample(list(prompt_ids), dict(sampling_params))
        self.calls.append(GenerateCall(list(prompt_ids), dict(sampling_params), token_ids, log_probs))
        return TokenOutput(token_ids=token_ids, log_probs=log_probs, stop_reason="completed")

    def _sample(
        self, prompt_ids: list[int], sampling_params: dict[str, Any]
    ) -> tuple[list[int], list[float]]:
        raise NotImplementedError

    def _emit(self, text: str, sampling_params: dict[str, Any]) -> tuple[list[int], list[float]]:
        """`text` as an engine would return it: cut at a stop string and at `max_tokens`."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        ids = engine_stop(self.tokenizer, ids, sampling_params.get("stop") or [])[
            : sampling_params["max_tokens"]
        ]
        start = sum(len(call.token_ids) for call in self.calls)
        return ids, [-0.001 * (start + k + 1) for k in range(len(ids))]  # distinct, to check alignment


class ScriptedGenerator(RecordingGenerator):
    """Replays `turns` (text; the last one repeats) as an engine would emit them."""

    def __init__(self, tokenizer: Any, turns: list[str]):
        super().__init__(tokenizer)
        self.turns = turns

    def _sample(self, prompt_ids, sampling_params):
        return self._emit(self.turns[min(len(self.calls), len(self.turns) - 1)], sampling_params)


class RulePolicyGenerator(RecordingGenerator):
    """A rule-based policy for whole datasets: searches the question in two phrasings, then answers
    with the title of the first document it read (or the first words of a summary)."""

    def _sample(self, prompt_ids, sampling_params):
        context = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        question, trajectory = context.split("Question: ")[-1].split("<|im_end|>", 1)
        tool_call = "</tool_call>" in sampling_params["stop"]
        read = trajectory.split("<tool_response>" if tool_call else "<information>")[1:]
        if not read:
            variants = [question.strip(), " ".join(word for word in question.split() if len(word) > 3)]
            if tool_call:
                call = json.dumps({"name": "search", "arguments": {"query_list": variants}})
                return self._emit(
                    f"<think>I should search.</think><tool_call>{call}</tool_call>", sampling_params
                )
            search = "<search>" + "\n".join(variants) + "</search>"
            return self._emit("<think>I should search.</think>" + search, sampling_params)
        titles = re.findall(r"Title: ([^)]*)\)", read[-1])
        answer = titles[0] if titles else " ".join(read[-1].split()[:3])
        return self._emit(f"<think>Found it.</think><answer> {answer} </answer>", sampling_params)


def engine_stop(tokenizer: Any, ids: list[int], stops: list[str]) -> list[int]:
    """Cut after the token whose addition makes the decoded text contain a stop string (vLLM's rule)."""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end], skip_special_tokens=False)
        if any(stop in text for stop in stops):
            return ids[:end]
    return ids


class HFGenerator(RecordingGenerator):
    """A real causal LM behind `generate`: sampling, stop strings and log-probs from transformers."""

    def __init__(self, tokenizer: Any, model: Any, seed: int = 0):
        super().__init__(tokenizer)
        self.model, self.seed = model, seed

    def _sample(self, prompt_ids, sampling_params):
        torch.manual_seed(self.seed + len(self.calls))
        temperature = sampling_params.get("temperature", 1.0)
        with torch.no_grad():
            out = self.model.generate(
                torch.tensor([prompt_ids]),
                attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                max_new_tokens=sampling_params["max_tokens"],
                do_sample=temperature > 0,
                temperature=temperature or None,
                top_p=sampling_params.get("top_p", 1.0),
                top_k=max(sampling_params.get("top_k", -1), 0),
                stop_strings=sampling_params.get("stop"),
                tokenizer=self.tokenizer,
                return_dict_in_generate=True,
                output_scores=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            scores = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        token_ids = out.sequences[0, len(prompt_ids) :].tolist()
        return token_ids, [float(x) for x in scores[0, : len(token_ids)]]


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
