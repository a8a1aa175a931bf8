#!/usr/bin/env bash
# Search-R1 baseline | PPO | Qwen2.5-3B-Instruct | 1 node x 8 GPUs, vLLM rollout, verl 0.9.1
#
#   python -m data_prep --from-hub --strategy searchr1 --output-dir data/searchr1   # one-query prompts
#   bash recipes/train_searchr1_baseline_qwen2.5-3b.sh
#
# The paper's comparison: the ExpandSearch PPO recipe with one query per search, top-3 passages and no
# squeezer ([SR1] top-3 E5 passages, one query per <search>; [ferret] recipe/search-r1: the same PPO
# config with topk 3 and no squeezer). Everything else, the reward included, is the PPO recipe's.
set -euo pipefail

export NUM_VARIANTS=${NUM_VARIANTS:-1}
export TOPK=${TOPK:-3}
export SQUEEZE=${SQUEEZE:-false}
export SQUEEZER_GPUS=${SQUEEZER_GPUS-}                # no squeezer: every GPU trains (8: 512 prompts per step [SR1])
export DATA_DIR=${DATA_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/data/searchr1}
export EXPERIMENT_NAME=${EXPERIMENT_NAME:-searchr1_ppo_qwen2.5-3b}
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_expandsearch_ppo_qwen2.5-3b.sh" "$@"
