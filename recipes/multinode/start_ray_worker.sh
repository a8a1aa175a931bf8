#!/usr/bin/env bash
# ExpandSearch | multi-node | Ray worker on every other node
#
#   export EXPANDSEARCH_RETRIEVER_TOKEN=...        # the same environment as the head (workers inherit it)
#   HEAD_ADDRESS=10.0.0.1 bash recipes/multinode/start_ray_worker.sh
#   HEAD_ADDRESS=10.0.0.1 BLOCK=1 bash recipes/multinode/start_ray_worker.sh   # stay in the foreground (Slurm srun)
set -euo pipefail

HEAD_ADDRESS=${HEAD_ADDRESS:?set HEAD_ADDRESS to the address of the head node}
RAY_PORT=${RAY_PORT:-6379}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
BLOCK=${BLOCK:-0}
DRY_RUN=${DRY_RUN:-0}

WORKER=(ray start --address "$HEAD_ADDRESS:$RAY_PORT" --num-gpus "$GPUS_PER_NODE")
if [[ "$BLOCK" == 1 ]]; then
    WORKER+=(--block)
fi
if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "${WORKER[@]}" "$@"
    exit 0
fi
exec "${WORKER[@]}" "$@"
