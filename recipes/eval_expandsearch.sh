#!/usr/bin/env bash
# ExpandSearch | evaluation (validation only) | a trained checkpoint | 1 node x 8 GPUs, vLLM, greedy
#
#   MODEL_PATH=outputs/expandsearch_ppo_qwen2.5-3b/checkpoints/global_step_1000/actor/huggingface \
#       bash recipes/eval_expandsearch.sh
#   # the same checkpoint with another squeezer (the paper swaps Llama-4-Maverick for Llama-3.1-8B at test
#   # time): the squeezer sits behind the retriever, so restart the retriever with the other one (or start a
#   # second retriever on another port, if the GPUs hold a second 32 GB index) and evaluate through it
#   MODEL=meta-llama/Llama-3.1-8B-Instruct PORT=8003 bash recipes/launch_squeezer.sh &
#   SQUEEZER_URL=http://127.0.0.1:8003/v1 SQUEEZER_MODEL=meta-llama/Llama-3.1-8B-Instruct PORT=8002 bash recipes/launch_retriever.sh &
#   RETRIEVER_URLS=http://127.0.0.1:8002 EXPERIMENT_NAME=eval_llama3.1-8b MODEL_PATH=... bash recipes/eval_expandsearch.sh
#   SQUEEZE=false MODEL_PATH=... bash recipes/eval_expandsearch.sh            # the same policy without a squeezer
#
# Greedy decoding (verl's val_kwargs: temperature 0, n 1) on every row of VAL_FILE (the seven test sets), in
# batches of VAL_BATCH_SIZE, once, then it stops. The GPU layout is the training recipe's (docs/gpu-layout.md). Per-dataset EM is logged as val-aux/<data_source>/em/mean@1 (and F1, searches, ...),
# and every trajectory is written to $RUN_DIR/validation/0.jsonl. MODEL_PATH is a Hugging Face directory:
# merge a verl checkpoint first (README, "Merge the checkpoint"). Toggles are the PPO recipe's
# (SQUEEZE, TOPK, NUM_VARIANTS, MAX_TURNS, RETRIEVER_URLS, ...); for the Search-R1 baseline's checkpoint use
# NUM_VARIANTS=1 TOPK=3 SQUEEZE=false DATA_DIR=data/searchr1.
set -euo pipefail

: "${MODEL_PATH:?set MODEL_PATH to the checkpoint to evaluate (a Hugging Face directory)}"
export MODEL_PATH
export VAL_ONLY=True
export ADV_ESTIMATOR=${ADV_ESTIMATOR:-grpo}          # no critic to load: validation only generates and scores
export USE_KL_LOSS=${USE_KL_LOSS:-False}             # and no reference model
export VAL_MAX_SAMPLES=${VAL_MAX_SAMPLES:--1}        # every test question (training validates on a sample)
export DATA_DIR=${DATA_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/data/expandsearch}
export TRAIN_FILE=${TRAIN_FILE:-${VAL_FILE:-$DATA_DIR/test.parquet}}   # verl builds a train loader even to validate
export EXPERIMENT_NAME=${EXPERIMENT_NAME:-eval_$(basename "$(dirname "$(dirname "$MODEL_PATH")")")}
# resume_mode=disable: never pick up a training checkpoint from RUN_DIR instead of MODEL_PATH
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_expandsearch_ppo_qwen2.5-3b.sh" trainer.resume_mode=disable "$@"
