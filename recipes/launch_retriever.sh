#!/usr/bin/env bash
# ExpandSearch | retriever | wiki-18 + E5-base-v2 flat index, faiss on GPUS, squeezer behind it | 1 node
#
#   bash recipes/download_wiki18.sh                     # once: corpus + index into data/wiki18
#   bash recipes/launch_squeezer.sh &                   # Llama-3.1-8B-Instruct on vLLM at :8001 (SQUEEZER=openai)
#   bash recipes/launch_retriever.sh                    # http://127.0.0.1:8000, index sharded over the training GPUs (0-6 of 8)
#   GPUS=0,1 HOST=0.0.0.0 bash recipes/launch_retriever.sh               # a retriever node serving other nodes
#   SQUEEZER=none bash recipes/launch_retriever.sh                       # no squeezer (Search-R1, the w/o-squeezer ablation)
#   SQUEEZER_URL=https://integrate.api.nvidia.com/v1 SQUEEZER_MODEL=meta/llama-4-maverick-17b-128e-instruct \
#       SQUEEZER_API_KEY_ENV=NVIDIA_API_KEY bash recipes/launch_retriever.sh      # the paper's squeezer on NVIDIA NIM (paid)
#   DRY_RUN=1 bash recipes/launch_retriever.sh          # print the command
#
# GPU memory: the flat index is 21,015,324 x 768 dims; fp16 on GPU (the default) that is 32.3 GB = 30.1 GiB in
# all, split over GPUS (the default 7: 4.3 GiB each beside training, GPU 7 left to the squeezer; 2 GPUs: 15.0 GiB
# each) plus faiss's scratch (1.5 GiB per GPU); fp32 (--no-gpu-fp16) doubles it. The E5 encoder adds ~0.3 GiB on
# the first GPU. Which GPUs: recipes/gpu_layout.sh's rule, the training recipe's too: RETRIEVER_GPUS, else TRAIN_GPUS, else
# CUDA_VISIBLE_DEVICES (else every GPU) less the squeezer's last one. The whole node's plan: docs/gpu-layout.md. Host RAM: the 65 GB file
# is read before the copy to GPU, plus the memory-mapped corpus. Without a CUDA build of faiss, set
# GPUS= (empty) for a CPU index (slow at this size; an HNSW index from `build-index` is the CPU option).
# `/health` answers 503 while loading and 200 when ready; the training recipes' doctor fails until then. Other flags: `python -m retriever_server serve --help`, passed through with "$@".
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ "${SQUEEZER:-}" == none ]]; then
    SQUEEZER_GPUS=${SQUEEZER_GPUS-}                   # no squeezer: none takes a GPU, the index spans every one
fi
# shellcheck source-path=SCRIPTDIR source=gpu_layout.sh
source "$REPO_ROOT/recipes/gpu_layout.sh"
WIKI18_DIR=${WIKI18_DIR:-$REPO_ROOT/data/wiki18}
CORPUS=${CORPUS:-$WIKI18_DIR/wiki-18.jsonl.gz}        # the retriever reads .jsonl or .jsonl.gz
DENSE_INDEX=${DENSE_INDEX:-$WIKI18_DIR/e5_Flat.index}  # Search-R1's bare faiss file, or a build-index directory
GPUS=${GPUS-$RETRIEVER_GPUS}                          # faiss GPUs (the trainers'), comma-separated; empty: CPU
HOST=${HOST:-127.0.0.1}                               # 0.0.0.0 to serve other nodes (then set EXPANDSEARCH_RETRIEVER_TOKEN)
PORT=${PORT:-8000}                                    # the agent loop's default RETRIEVER_URLS port
SQUEEZER=${SQUEEZER:-openai}                          # openai (vLLM, SGLang, NIM) | none | hf | extractive
SQUEEZER_URL=${SQUEEZER_URL:-http://127.0.0.1:8001/v1}                 # recipes/launch_squeezer.sh's default
SQUEEZER_MODEL=${SQUEEZER_MODEL:-meta-llama/Llama-3.1-8B-Instruct}     # the paper's test-time swap for Llama-4-Maverick
SQUEEZER_API_KEY_ENV=${SQUEEZER_API_KEY_ENV:-}        # name of the variable holding the API key (NIM: NVIDIA_API_KEY)
SQUEEZER_TOKENIZER=${SQUEEZER_TOKENIZER:-}            # HF tokenizer to count the squeezer's context exactly; empty: estimated
SQUEEZER_CACHE_DB=${SQUEEZER_CACHE_DB:-$WIKI18_DIR/squeezes.sqlite}    # summaries kept across restarts
PYTHON=${PYTHON:-python3}
DRY_RUN=${DRY_RUN:-0}

layout_visible GPUS
FAISS_GPUS=""                                         # empty GPUS: the index on the CPU, CUDA_VISIBLE_DEVICES as it was
if [[ -n "$GPUS" ]]; then
    export CUDA_VISIBLE_DEVICES=$GPUS                 # the server sees these only, numbered 0,1,... (the encoder on the first)
    FAISS_GPUS=$(layout_ordinals "$GPUS")
fi

SERVER=(
    --corpus "$CORPUS"
    --dense-index "$DENSE_INDEX"
    --retriever dense
    --gpus "$FAISS_GPUS"
    --host "$HOST"
    --port "$PORT"
    --squeezer "$SQUEEZER"
)
if [[ "$SQUEEZER" == openai ]]; then
    SERVER+=(--squeezer-url "$SQUEEZER_URL" --squeezer-model "$SQUEEZER_MODEL" --squeezer-cache-db "$SQUEEZER_CACHE_DB")
    if [[ -n "$SQUEEZER_API_KEY_ENV" ]]; then
        SERVER+=(--squeezer-api-key-env "$SQUEEZER_API_KEY_ENV")
    fi
    if [[ -n "$SQUEEZER_TOKENIZER" ]]; then
        SERVER+=(--squeezer-tokenizer "$SQUEEZER_TOKENIZER")
    fi
fi

if [[ "$DRY_RUN" == 1 ]]; then
    echo "layout ($VISIBLE_FROM): CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-} --gpus $FAISS_GPUS" >&2   # stdout: the command
    printf '%s\n' "$PYTHON" -m retriever_server serve "${SERVER[@]}" "$@"
    exit 0
fi
exec "$PYTHON" -m retriever_server serve "${SERVER[@]}" "$@"
