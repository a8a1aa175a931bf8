#!/usr/bin/env bash
# ExpandSearch | squeezer | Llama-3.1-8B-Instruct on vLLM | 1 node x 1 GPU, OpenAI-compatible, for `--squeezer openai`
#
#   bash recipes/launch_squeezer.sh                                          # the last GPU (7 of 8), http://127.0.0.1:8001/v1
#   GPUS=0 PORT=8002 bash recipes/launch_squeezer.sh                         # a squeezer node's first GPU
#   MODEL=meta-llama/Llama-3.3-70B-Instruct TP=4 bash recipes/launch_squeezer.sh   # the last 4 GPUs (4-7 of 8)
#   bash recipes/launch_squeezer.sh --max-num-batched-tokens 16384          # anything after goes to `vllm serve`
#   DRY_RUN=1 bash recipes/launch_squeezer.sh                                # print the command
#
# Then point the retriever at it (one squeezer serves every retriever replica):
#   python -m retriever_server serve --corpus wiki-18.jsonl --dense-index e5_Flat.index --gpus 1 \
#       --squeezer openai --squeezer-url http://127.0.0.1:8001/v1 --squeezer-model meta-llama/Llama-3.1-8B-Instruct \
#       --squeezer-tokenizer meta-llama/Llama-3.1-8B-Instruct --squeezer-cache-db squeezes.sqlite
#
# NVIDIA NIM instead (the paper's setup: Llama-4-Maverick-17B-128E-Instruct on NVIDIA's hosted API, paid
# per call; nothing to launch here):
#   export NVIDIA_API_KEY=nvapi-...
#   python -m retriever_server serve ... --squeezer openai --squeezer-url https://integrate.api.nvidia.com/v1 \
#       --squeezer-model meta/llama-4-maverick-17b-128e-instruct --squeezer-api-key-env NVIDIA_API_KEY \
#       --squeezer-concurrency 16 --squeezer-cache-db squeezes.sqlite
# A self-hosted NIM container speaks the same API: --squeezer-url http://HOST:8000/v1 and its model name.
# SGLang works the same way: python -m sglang.launch_server --model-path "$MODEL" --port 8001.
#
# Which GPUs: recipes/gpu_layout.sh's rule, the training recipe's too (docs/gpu-layout.md): the last TP of
# CUDA_VISIBLE_DEVICES (else of every GPU), or SQUEEZER_GPUS; a TRAIN_GPUS set here must not include them.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=gpu_layout.sh
source "$REPO_ROOT/recipes/gpu_layout.sh"
MODEL=${MODEL:-meta-llama/Llama-3.1-8B-Instruct}   # the paper's test-time squeezer swap for Llama-4-Maverick
GPUS=${GPUS:-$SQUEEZER_GPUS}                       # its own GPU(s), TP of them: the last visible (7 on a training node)
SERVED_NAME=${SERVED_NAME:-$MODEL}                 # what the retriever's --squeezer-model must say
HOST=${HOST:-127.0.0.1}                            # 0.0.0.0 when the retriever runs on another node
PORT=${PORT:-8001}                                 # the retriever takes 8000
TP=$SQUEEZER_TP                                    # tensor-parallel GPUs (TP, default 1)
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.90}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-8192}               # see below
MAX_NUM_SEQS=${MAX_NUM_SEQS:-256}                  # sequences decoded together (continuous batching)
API_KEY=${API_KEY:-}                               # set it to require a bearer token (retriever: --squeezer-api-key-env)
DRY_RUN=${DRY_RUN:-0}

# MAX_MODEL_LEN: a squeeze is squeezer_context_tokens (4096) of passages + ~250 of instructions and queries
# + squeezer_max_tokens (512) of summary = ~4860 tokens; 8192 leaves room for a larger context budget.
# Memory (TP=1, 80 GB): 8B bf16 weights = 16 GB; Llama-3.1-8B's KV cache is 32 layers x 8 KV heads x 128 dims
# x 2 (K, V) x 2 bytes = 128 KiB per token, so 0.90 x 80 - 16 = ~56 GB holds ~450k tokens, ~90 squeezes at
# full length: MAX_NUM_SEQS=256 is the cap, the KV cache is what binds.
SERVER=(
    --served-model-name "$SERVED_NAME"
    --host "$HOST" --port "$PORT"
    --tensor-parallel-size "$TP"
    --dtype bfloat16
    --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION"
    --max-model-len "$MAX_MODEL_LEN"
    --max-num-seqs "$MAX_NUM_SEQS"
    --enable-prefix-caching          # every squeeze starts with the same system prompt
    --generation-config vllm         # no sampling defaults from the checkpoint: the retriever asks for temperature 0
)
if [[ -n "$API_KEY" ]]; then
    SERVER+=(--api-key "$API_KEY")
fi

if [[ -z "$GPUS" ]]; then
    echo "GPUS and SQUEEZER_GPUS are empty (SQUEEZER_GPUS= means a remote squeezer): unset SQUEEZER_GPUS for the last GPU of $VISIBLE_GPUS, or set GPUS" >&2
    exit 2
fi
layout_visible GPUS
IFS=, read -r -a SQUEEZER_IDS <<< "$GPUS"
if [[ "${#SQUEEZER_IDS[@]}" != "$TP" ]]; then
    echo "GPUS=$GPUS lists ${#SQUEEZER_IDS[@]} GPU(s) but TP=$TP: vLLM runs on the first TP of them, and fails with fewer;" \
        "set GPUS to $TP GPU(s) (the default: the last $TP of $VISIBLE_GPUS) or TP=${#SQUEEZER_IDS[@]}" >&2
    exit 2
fi
if [[ -n "$TRAIN_GPUS_GIVEN" ]]; then                # training on this node too: keep off its GPUs
    layout_apart TRAIN_GPUS GPUS
fi
export CUDA_VISIBLE_DEVICES=$GPUS                  # vLLM takes the share below of each of these, and nothing else

if [[ "$DRY_RUN" == 1 ]]; then
    echo "layout ($VISIBLE_FROM): CUDA_VISIBLE_DEVICES=$GPUS" >&2   # on stderr: stdout is the command alone
    printf '%s\n' vllm serve "$MODEL" "${SERVER[@]}" "$@"
    exit 0
fi
exec vllm serve "$MODEL" "${SERVER[@]}" "$@"
