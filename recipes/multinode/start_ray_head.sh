#!/usr/bin/env bash
# ExpandSearch | multi-node | Ray head on the first node (it also trains, and runs the job's driver)
#
#   export EXPANDSEARCH_RETRIEVER_TOKEN=...        # Ray's workers inherit this shell's environment: export what
#   export HF_HOME=/shared/hf                      # the agent loop and the models need BEFORE starting Ray
#   bash recipes/multinode/start_ray_head.sh       # then start_ray_worker.sh on every other node, then submit.sh
#
# Every node needs the same Python environment with this repository installed (pip install -e ".[gpu]"):
# verl's workers import expandsearch_verl by name, and `ray start` workers see no PYTHONPATH of yours.
# Paths (data, RUN_DIR, local models) must be the same on every node: a shared filesystem.
set -euo pipefail

RAY_PORT=${RAY_PORT:-6379}
DASHBOARD_PORT=${DASHBOARD_PORT:-8265}                # submit.sh talks to the job server here
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
DRY_RUN=${DRY_RUN:-0}

HEAD=(ray start --head --port "$RAY_PORT" --dashboard-host 0.0.0.0 --dashboard-port "$DASHBOARD_PORT" --num-gpus "$GPUS_PER_NODE")
if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "${HEAD[@]}" "$@"
    exit 0
fi
"${HEAD[@]}" "$@"
echo "workers: HEAD_ADDRESS=$(hostname -I | awk '{print $1}') bash recipes/multinode/start_ray_worker.sh" >&2
