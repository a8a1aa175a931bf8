"""A real instruct model (SmolLM2-135M-Instruct, offline GGUF) through the loop against the real server.

SmolLM2 is far too small to follow the protocol well; what this shows is that whatever a real
model samples (through `transformers.generate` with the loop's stop strings), with its own
tokenizer and ChatML template (verl's generic continuous-token builder, `model_type: llama`), the
loop completes and every invariant holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from data_prep.templates import render_prompt, system_prompt

SAMPLING = {"temperature": 0.7, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
QUESTION = "Who wrote the novel Dracula?"


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path):
    """SmolLM2's tokenizer and model, dequantised from the GGUF once and kept in the project cache."""
    cache = Path(os.environ.get("EXPANDSEARCH_CACHE") or Path("~/.cache/expandsearch").expanduser())
    target = cache / "smollm2-135m-instruct-hf"
    if not (target / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
        model = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
        tokenizer.save_pretrained(target)
        model.save_pretrained(target)
    return AutoTokenizer.from_pretrained(target), AutoModelForCausalLM.from_pretrained(target).eval()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
async def test_smollm2_rollout(smollm2, hf_generator_for, make_loop, demo_retriever_url, protocol):
    tokenizer, model = smollm2
    generator = hf_generator_for(tokenizer, model)
    loop = make_loop(
        generator,
        response_length=128,
        tokenizer=tokenizer,
        hf_model_type="llama",
        retriever_urls=[demo_retriever_url],
        max_observation_tokens=48,
        squeeze=False,
    )
    raw_prompt = render_prompt(QUESTION, system_prompt("expandsearch", protocol))
    output = await loop.run(
        dict(SAMPLING), raw_prompt=raw_prompt, extra_info={"question": QUESTION, "protocol": protocol}
    )
    assert output.extra_fields["search_failures"] == 0
