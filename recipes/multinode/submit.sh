#!/usr/bin/env bash
# ExpandSearch | multi-node | PPO | Qwen2.5-3B-Instruct | 2 nodes x 8 GPUs, through `ray job submit`
#
#   RETRIEVER_URLS=http://10.0.0.9:8000 bash recipes/multinode/submit.sh                   # the PPO recipe on 2 nodes
#   RECIPE=train_expandsearch_grpo_qwen2.5-3b.sh NNODES=4 RETRIEVER_URLS=http://10.0.0.9:8000,http://10.0.0.10:8000 \
#       bash recipes/multinode/submit.sh trainer.total_training_steps=500                  # overrides go to the recipe
#   DRY_RUN=1 RETRIEVER_URLS=http://10.0.0.9:8000 bash recipes/multinode/submit.sh         # print the submit command
#
# The job runs the training recipe on the head node (its driver); verl's ray.init joins the cluster
# started by start_ray_head.sh / start_ray_worker.sh and places workers on every node. The recipe's
# doctor then runs with trainer.nnodes > 1 and checks every node through RAY_ADDRESS (set in the job):
# plugin importable, the same absolute paths present (the recipes make them absolute), every retriever
# URL reachable with that node's EXPANDSEARCH_RETRIEVER_TOKEN, and enough GPUs.
#
# The retriever: one server every node reaches (launch_retriever.sh with HOST=0.0.0.0 and an
# EXPANDSEARCH_RETRIEVER_TOKEN, on a retriever node or one of these), or several replicas listed in
# RETRIEVER_URLS (each search goes round-robin, and fails over to the next). Not 127.0.0.1: on the other
# nodes that is themselves.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RAY_DASHBOARD=${RAY_DASHBOARD:-http://127.0.0.1:8265}   # the head's job server (start_ray_head.sh DASHBOARD_PORT)
RECIPE=${RECIPE:-train_expandsearch_ppo_qwen2.5-3b.sh}   # any recipe in recipes/
RETRIEVER_URLS=${RETRIEVER_URLS:?set RETRIEVER_URLS to retriever address(es) every node reaches}
NNODES=${NNODES:-2}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
TRAIN_GPUS=${TRAIN_GPUS:-0,1,2,3,4,5,6,7}   # every GPU of a node trains: the retriever and the squeezer run elsewhere
RETRIEVER_GPUS=${RETRIEVER_GPUS-}           # on the training nodes: none (docs/gpu-layout.md)
SQUEEZER_GPUS=${SQUEEZER_GPUS-}
# 16 GPUs halve each GPU's share of a step: 512 prompts x n / 16 = 32 rows (PPO; GRPO: 160) and
# 256 x n / 16 = 16 rows per update (GRPO: 80), so the micro-batches shrink to divide them (2 nodes).
ACTOR_MICRO_BATCH=${ACTOR_MICRO_BATCH:-16}
CRITIC_MICRO_BATCH=${CRITIC_MICRO_BATCH:-16}
LOG_PROB_MICRO_BATCH=${LOG_PROB_MICRO_BATCH:-32}
DRY_RUN=${DRY_RUN:-0}

# `ray job submit` does not pass this shell's environment to the job: the recipe's variables set here go
# on its command line (secrets do not: export them on every node before `ray start`).
FORWARD=(NNODES GPUS_PER_NODE TRAIN_GPUS RETRIEVER_GPUS SQUEEZER_GPUS ACTOR_MICRO_BATCH CRITIC_MICRO_BATCH LOG_PROB_MICRO_BATCH RETRIEVER_URLS
         MODEL_PATH CRITIC_MODEL_PATH DATA_DIR TRAIN_FILE VAL_FILE EXPERIMENT_NAME RUN_DIR PYTHON
         ADV_ESTIMATOR ROLLOUT_N USE_KL_LOSS NUM_VARIANTS TOPK SQUEEZE MAX_TURNS PROTOCOL REWARD_SHAPING
         VAL_ONLY USE_V1 TOTAL_TRAINING_STEPS LOGGER SKIP_DOCTOR DOCTOR_FLAGS ROLLOUT USE_DYNAMIC_BSZ
         VAL_MAX_SAMPLES VAL_BATCH_SIZE TRAIN_BATCH_SIZE PPO_MINI_BATCH_SIZE ACTOR_TOKENS_PER_GPU
         LOG_PROB_TOKENS_PER_GPU CRITIC_TOKENS_PER_GPU)
ENVIRONMENT=()
for name in "${FORWARD[@]}"; do
    if [[ -n "${!name+set}" ]]; then                        # set, even empty (SQUEEZER_GPUS= means none)
        ENVIRONMENT+=("$name=${!name}")
    fi
done

JOB=(ray job submit --address "$RAY_DASHBOARD" -- env "${ENVIRONMENT[@]}" bash "$REPO_ROOT/recipes/$RECIPE" "$@")
if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "${JOB[@]}"
    exit 0
fi
exec "${JOB[@]}"
