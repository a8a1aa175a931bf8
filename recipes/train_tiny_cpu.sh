#!/usr/bin/env bash
# ExpandSearch | GRPO with KL | SmolLM2-135M-Instruct (offline) | this machine's CPU, HF rollout, verl 0.9.1
#
#   bash recipes/train_tiny_cpu.sh                                       # 2 steps on a laptop, a few minutes
#   STEPS=2 SAVE_FREQ=1 RUN_DIR=/tmp/tiny bash recipes/train_tiny_cpu.sh  # checkpoints in /tmp/tiny/checkpoints
#   MODEL_PATH=/models/Qwen2.5-0.5B-Instruct bash recipes/train_tiny_cpu.sh actor_rollout_ref.actor.optim.lr=1e-5
#   DRY_RUN=1 bash recipes/train_tiny_cpu.sh                             # print the launch command, start nothing
#
# The GRPO recipe with DEVICE=cpu (expandsearch_verl/cpu; docs/train-on-cpu.md), at laptop sizes: the sample
# data (python -m data_prep), the demo retriever (python -m retriever_server serve --demo, started here and
# stopped on exit), the offline SmolLM2-135M as the policy. Everything else is the GPU recipe's.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}

# --- what to run --------------------------------------------------------------------------------------
STEPS=${STEPS:-2}                                    # training steps
SAVE_FREQ=${SAVE_FREQ:-$STEPS}                       # checkpoint every N steps (and at the last)
TEST_FREQ=${TEST_FREQ:-$STEPS}                       # validate every N steps (and at the last)
VAL_BEFORE_TRAIN=${VAL_BEFORE_TRAIN:-False}
RUN_DIR=${RUN_DIR:-$REPO_ROOT/outputs/tiny_cpu}      # data, retriever log, checkpoints, validation dumps
MODEL_PATH=${MODEL_PATH:-}                           # empty: the offline SmolLM2-135M-Instruct (converted once)
ROLLOUT=${ROLLOUT:-hf}                               # hf: sample from the model; scripted: the tests' fixed policy
BATCH=${BATCH:-2}                                    # prompts per step
ROLLOUT_N=${ROLLOUT_N:-2}                            # GRPO group size
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-512}          # the sample prompts are ~250 tokens
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-512}      # all turns with the observations
MAX_TURNS=${MAX_TURNS:-3}
TOPK=${TOPK:-3}                                      # documents per query
LR=${LR:-1e-6}                                       # the GPU recipe's
VAL_DATASETS=${VAL_DATASETS:-nq,hotpotqa}            # validation metrics per data source
VAL_PER_DATASET=${VAL_PER_DATASET:-1}
RETRIEVER_URLS=${RETRIEVER_URLS:-}                   # empty: start the demo retriever on RETRIEVER_PORT
RETRIEVER_PORT=${RETRIEVER_PORT:-8765}
RETRIEVER_TIMEOUT=${RETRIEVER_TIMEOUT:-600}          # seconds to wait for its /health (the first start builds the demo index)
DRY_RUN=${DRY_RUN:-0}
if ! CHECKED=$("$PYTHON" -m expandsearch_verl.cpu overrides "actor_rollout_ref.rollout.name=$ROLLOUT" 2>&1 > /dev/null); then
    if [[ "$CHECKED" == DEVICE=cpu:* ]]; then              # the backend's refusal, said in this recipe's words
        echo "ROLLOUT=$ROLLOUT: needs a GPU; this recipe runs on the CPU: ROLLOUT=hf or scripted" >&2
    else                                                 # anything else (a broken install): as it is
        echo "$CHECKED" >&2
    fi
    exit 2
fi

# --- derived ------------------------------------------------------------------------------------------
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
DATA_DIR=$RUN_DIR/data
if [[ -z "$MODEL_PATH" ]]; then
    MODEL_PATH=$("$PYTHON" -c 'from retriever_server.models import hf_source; print(hf_source("smollm2"))')
fi
if [[ ! -f "$MODEL_PATH/config.json" ]]; then
    echo "MODEL_PATH=$MODEL_PATH: not a Hugging Face model directory (no config.json); leave MODEL_PATH empty for the offline SmolLM2, or point it at a local directory" >&2
    exit 2
fi
STARTED_RETRIEVER=${RETRIEVER_URLS:+0}
RETRIEVER_URLS=${RETRIEVER_URLS:-http://127.0.0.1:$RETRIEVER_PORT}

TINY=(
    data.train_batch_size="$BATCH"
    data.max_prompt_length="$MAX_PROMPT_LENGTH"
    data.max_response_length="$MAX_RESPONSE_LENGTH"
    actor_rollout_ref.rollout.max_model_len=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH))
    actor_rollout_ref.rollout.name="$ROLLOUT"
    actor_rollout_ref.actor.ppo_mini_batch_size="$BATCH"   # one update per step
    actor_rollout_ref.actor.optim.lr="$LR"
    actor_rollout_ref.actor.optim.lr_warmup_steps=0
    trainer.total_training_steps="$STEPS"
    trainer.save_freq="$SAVE_FREQ"
    trainer.test_freq="$TEST_FREQ"
    trainer.val_before_train="$VAL_BEFORE_TRAIN"
    trainer.resume_mode=auto                          # a second run continues from RUN_DIR/checkpoints
)
launch() {  # ROLLOUT is this recipe's (hf or scripted, last in the arguments), not the GPU recipe's engine
    env -u ROLLOUT DEVICE=cpu SKIP_DOCTOR="${SKIP_DOCTOR:-1}" PYTHON="$PYTHON" MODEL_PATH="$MODEL_PATH" RUN_DIR="$RUN_DIR" \
        DATA_DIR="$DATA_DIR" RETRIEVER_URLS="$RETRIEVER_URLS" \
        ROLLOUT_N="$ROLLOUT_N" TOPK="$TOPK" MAX_TURNS="$MAX_TURNS" SQUEEZE=false \
        USE_DYNAMIC_BSZ=False ACTOR_MICRO_BATCH=1 LOG_PROB_MICRO_BATCH=1 EXPERIMENT_NAME=tiny_cpu DRY_RUN="$DRY_RUN" \
        bash "$REPO_ROOT/recipes/train_expandsearch_grpo_qwen2.5-3b.sh" "${TINY[@]}" "$@"
}
if [[ "$DRY_RUN" == 1 ]]; then
    launch "$@"
    exit 0
fi

# --- 1. the sample data -------------------------------------------------------------------------------
"$PYTHON" -m data_prep --output-dir "$DATA_DIR" --overwrite --test-datasets "$VAL_DATASETS" \
    --max-per-dataset "$VAL_PER_DATASET" > /dev/null

# --- 2. the retriever: the demo one, started here and stopped on exit; or every RETRIEVER_URLS replica --------
if [[ "$STARTED_RETRIEVER" != 0 ]]; then
    "$PYTHON" -m retriever_server serve --demo --port "$RETRIEVER_PORT" > "$RUN_DIR/retriever.log" 2>&1 &
    RETRIEVER_PID=$!
    trap 'kill "$RETRIEVER_PID" 2> /dev/null; wait "$RETRIEVER_PID" 2> /dev/null || true' EXIT
else
    RETRIEVER_PID=$$                                 # nothing started here: only RETRIEVER_TIMEOUT ends the wait
fi
DEADLINE=$((SECONDS + RETRIEVER_TIMEOUT))
IFS=, read -r -a URLS <<< "${RETRIEVER_URLS// /}"
for url in "${URLS[@]}"; do  # each /health answers 200 (503 while the index loads)
    until "$PYTHON" -c 'import sys, httpx; sys.exit(httpx.get(sys.argv[1] + "/health").status_code != 200)' \
        "$url" 2> /dev/null; do
        if ((SECONDS >= DEADLINE)) || ! kill -0 "$RETRIEVER_PID" 2> /dev/null; then
            if [[ "$STARTED_RETRIEVER" != 0 ]]; then
                echo "the demo retriever did not come up on port $RETRIEVER_PORT within RETRIEVER_TIMEOUT=${RETRIEVER_TIMEOUT}s;" \
                    "see $RUN_DIR/retriever.log (a port in use: RETRIEVER_PORT=<free port>)" >&2
            else
                echo "RETRIEVER_URLS=$RETRIEVER_URLS: $url/health did not answer 200 within RETRIEVER_TIMEOUT=${RETRIEVER_TIMEOUT}s;" \
                    "start that retriever (python -m retriever_server serve ...), or leave RETRIEVER_URLS empty for the demo one" >&2
            fi
            exit 3
        fi
        sleep 2
    done
done

# --- 3. verl's trainer ----------------------------------------------------------------------------------
launch "$@"
