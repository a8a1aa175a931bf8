#!/usr/bin/env bash
# ExpandSearch | GRPO | Qwen2.5-3B-Instruct | 1 node x 8 GPUs, vLLM rollout, verl 0.9.1
#
#   bash recipes/train_expandsearch_grpo_qwen2.5-3b.sh
#   DRY_RUN=1 bash recipes/train_expandsearch_grpo_qwen2.5-3b.sh trainer.total_training_steps=300
#
# The PPO recipe with GRPO's toggles; every other setting and environment variable is the PPO recipe's.
# [ferret] configs/train/grpo.yaml = ppo.yaml + adv_estimator grpo, rollout.n 5, use_kl_loss True
# (low_var_kl, 0.001); [SR1] the same (group size 5, KL loss 0.001). No critic is built. Search-R1
# reports GRPO collapsing after a few hundred steps at 7B (issues #88, #89): watch critic/score.
set -euo pipefail

export ADV_ESTIMATOR=${ADV_ESTIMATOR:-grpo}
export ROLLOUT_N=${ROLLOUT_N:-5}                      # group size: 512 prompts x 5 = 2560 trajectories per step
export USE_KL_LOSS=${USE_KL_LOSS:-True}
export EXPERIMENT_NAME=${EXPERIMENT_NAME:-expandsearch_grpo_qwen2.5-3b}
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_expandsearch_ppo_qwen2.5-3b.sh" "$@"
