#!/usr/bin/env bash
# ExpandSearch | PPO | Qwen2.5-3B-Instruct | 1 node x 8 GPUs (7 train, 1 squeezes), vLLM rollout, verl 0.9.1
#
#   bash recipes/train_expandsearch_ppo_qwen2.5-3b.sh                                  # the paper's setting
#   SQUEEZER_GPUS= bash recipes/train_expandsearch_ppo_qwen2.5-3b.sh                 # squeezer remote (NIM): all GPUs train
#   ROLLOUT=sglang bash recipes/train_expandsearch_ppo_qwen2.5-3b.sh                   # SGLang instead of vLLM
#   bash recipes/train_expandsearch_ppo_qwen2.5-3b.sh trainer.total_training_steps=300   # any hydra override last
#   MODEL_PATH=/models/Qwen2.5-3B-Instruct RETRIEVER_URLS=http://10.0.0.5:8000 bash recipes/train_expandsearch_ppo_qwen2.5-3b.sh
#   DRY_RUN=1 bash recipes/train_expandsearch_ppo_qwen2.5-3b.sh                        # print the launch command, one argument a line
#
# Before: the retriever (recipes/launch_retriever.sh) and, with SQUEEZE=true, the squeezer behind it
# (recipes/launch_squeezer.sh) are up, and `python -m data_prep --from-hub --output-dir data/expandsearch`
# wrote the parquet files. `expandsearch doctor` checks all of it first (SKIP_DOCTOR=1 skips it).
#
# This file is the one recipe; the others set toggles and exec it: train_expandsearch_grpo_qwen2.5-3b.sh
# (ADV_ESTIMATOR=grpo ROLLOUT_N=5 USE_KL_LOSS=True), train_searchr1_baseline_qwen2.5-3b.sh (NUM_VARIANTS=1
# TOPK=3 SQUEEZE=false) and eval_expandsearch.sh (VAL_ONLY=True).
#
# Sources: [ferret] = configs/train/ppo.yaml and tools config of the ExpandSearch authors' code (the paper
# gives no hyper-parameter table); [SR1] = Search-R1 paper / scripts; [here] = a choice of this recipe.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- what to train, where -----------------------------------------------------------------------------
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-3B-Instruct}       # [ferret] policy; a local directory on clusters without the hub
CRITIC_MODEL_PATH=${CRITIC_MODEL_PATH:-$MODEL_PATH}       # [ferret] the critic starts from the policy
DATA_DIR=${DATA_DIR:-$REPO_ROOT/data/expandsearch}        # python -m data_prep --output-dir $DATA_DIR
TRAIN_FILE=${TRAIN_FILE:-$DATA_DIR/train.parquet}         # NQ + HotpotQA train [SR1, ferret]
VAL_FILE=${VAL_FILE:-$DATA_DIR/test.parquet}              # the seven test sets [SR1, ferret]
RETRIEVER_URLS=${RETRIEVER_URLS:-http://127.0.0.1:8000}   # comma-separated retriever_server replicas (round-robin, failover)
EXPERIMENT_NAME=${EXPERIMENT_NAME:-expandsearch_ppo_qwen2.5-3b}
RUN_DIR=${RUN_DIR:-$REPO_ROOT/outputs/$EXPERIMENT_NAME}   # agent-loop YAML, checkpoints, validation dumps
NNODES=${NNODES:-1}
PYTHON=${PYTHON:-python3}

# --- GPU layout of a node (docs/gpu-layout.md has each GPU's memory arithmetic; the doctor checks it) ----
# gpu_layout.sh resolves TRAIN_GPUS, RETRIEVER_GPUS and SQUEEZER_GPUS from CUDA_VISIBLE_DEVICES (else every GPU) by
# the rule launch_retriever.sh and launch_squeezer.sh follow too: the squeezer the last GPU, training beside an index
# shard on the others (8 GPUs: 0-6 and 7 [here]); SQUEEZER_GPUS= for a remote squeezer (NIM) or none.
# shellcheck source-path=SCRIPTDIR source=gpu_layout.sh
source "$REPO_ROOT/recipes/gpu_layout.sh"
if [[ -z "$TRAIN_GPUS" && "${DEVICE:-gpu}" != cpu ]]; then  # DEVICE=cpu: one rank on the CPU, no GPU needed
    echo "TRAIN_GPUS: no GPU left to train ($VISIBLE_FROM, SQUEEZER_GPUS=$SQUEEZER_GPUS); set SQUEEZER_GPUS= for a remote squeezer, or ask the scheduler for more GPUs" >&2
    exit 2
fi
IFS=, read -r -a TRAIN_GPU_IDS <<< "$TRAIN_GPUS"
GPUS_PER_NODE=${GPUS_PER_NODE:-$((${#TRAIN_GPU_IDS[@]} > 0 ? ${#TRAIN_GPU_IDS[@]} : 1))}  # follows TRAIN_GPUS ([ferret, SR1]: 8, no local squeezer)
if [[ -n "$TRAIN_GPUS" ]]; then
    if [[ "$GPUS_PER_NODE" != "${#TRAIN_GPU_IDS[@]}" ]]; then
        echo "GPUS_PER_NODE=$GPUS_PER_NODE but TRAIN_GPUS=$TRAIN_GPUS lists ${#TRAIN_GPU_IDS[@]} GPUs: set one of them" >&2
        exit 2
    fi
    export CUDA_VISIBLE_DEVICES=$TRAIN_GPUS               # the Ray that verl starts on this node sees only these
fi
if [[ "${DRY_RUN:-0}" == 1 ]]; then                       # on stderr: stdout is the launch command alone
    echo "layout ($VISIBLE_FROM): CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-} RETRIEVER_GPUS=$RETRIEVER_GPUS SQUEEZER_GPUS=$SQUEEZER_GPUS" >&2
fi

# --- algorithm and search toggles (the variants set these) ----------------------------------------------
ADV_ESTIMATOR=${ADV_ESTIMATOR:-gae}                       # [ferret] PPO with GAE (grpo: the GRPO recipe)
ROLLOUT_N=${ROLLOUT_N:-1}                                 # [ferret] 1 response per prompt for PPO (GRPO group: 5)
USE_KL_LOSS=${USE_KL_LOSS:-False}                         # [ferret] PPO: no KL, so no reference model (GRPO: True)
NUM_VARIANTS=${NUM_VARIANTS:-3}                           # [ferret] query variants searched per turn (Search-R1: 1)
TOPK=${TOPK:-10}                                          # [ferret] documents per query (Search-R1: 3)
SQUEEZE=${SQUEEZE:-true}                                  # [ferret] squeeze the passages (false: the w/o-squeezer ablation)
MAX_TURNS=${MAX_TURNS:-4}                                 # [ferret] max_assistant_turns 4 [SR1] B = 4 actions
PROTOCOL=${PROTOCOL:-tags}                                # fallback only: each row's extra_info.protocol wins
read -r -a AGENT_LOOP_SETTINGS <<< "${AGENT_LOOP_SETTINGS:-}"   # any other agent-loop YAML key, e.g. "timeout_s=45"
REWARD_SHAPING=${REWARD_SHAPING:-true}                    # [ferret, SR1 v0.3] 1 / 0.8 / 0.2 / 0.1 / 0 format table; false: plain EM
VAL_ONLY=${VAL_ONLY:-False}                               # True: validate once, train nothing (eval_expandsearch.sh)
ROLLOUT_ENGINE=${ROLLOUT:-vllm}                           # ROLLOUT=vllm | sglang [here] (ferret: sglang; SR1: vllm)
USE_DYNAMIC_BSZ=${USE_DYNAMIC_BSZ:-True}                  # [here] micro-batches by token budget: bounded logits (below)
USE_V1=${USE_V1:-False}                                   # [here] legacy RayPPOTrainer; docs/recipes.md "trainer.use_v1=false" says why
TOTAL_TRAINING_STEPS=${TOTAL_TRAINING_STEPS:-1005}        # [SR1] scripts v0.2 (paper: 500; ferret: 15 epochs, ~5k)
LOGGER=${LOGGER:-[console]}                               # [console,wandb] to log to Weights & Biases
DRY_RUN=${DRY_RUN:-0}                                     # 1: print the launch command and exit
SKIP_DOCTOR=${SKIP_DOCTOR:-0}                             # 1: launch without the preflight
read -r -a DOCTOR_FLAGS <<< "${DOCTOR_FLAGS:-}"           # e.g. DOCTOR_FLAGS="--skip gpus"
DEVICE=${DEVICE:-gpu}                                     # cpu: verl's trainer on this machine's CPU (docs/train-on-cpu.md)
if [[ "$DEVICE" == gpu && "$ROLLOUT_ENGINE" != vllm && "$ROLLOUT_ENGINE" != sglang ]]; then
    echo "ROLLOUT=$ROLLOUT_ENGINE: expected vllm or sglang" >&2
    exit 2
fi

# --- derived ------------------------------------------------------------------------------------------
MAX_PROMPT_LENGTH=4096                                    # [ferret] system + question tokens
MAX_RESPONSE_LENGTH=3000                                  # [ferret] all turns together, observations included
MAX_MODEL_LEN=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH)) # 4096 + 3000 = 7096: the longest trajectory vLLM holds
# Every step splits evenly over the GPUs (verl asserts it): 2 updates of the largest multiple of the GPU count
# up to 256 prompts. 8 or 16 GPUs: 256 and 512 [ferret, SR1]; 7 GPUs (one squeezes): 252 and 504 = 7 x 72.
N_GPUS=$((NNODES * GPUS_PER_NODE))
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-$((256 / N_GPUS * N_GPUS))}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-$((2 * PPO_MINI_BATCH_SIZE))}
# Token budgets per forward (USE_DYNAMIC_BSZ=True). The logits of one forward are tokens x 151,936 x 2 B, kept
# ~4 times in the log-prob passes (entropy) and ~3 times in the update: 16384 tokens = 18.5 / 13.9 GiB, where a
# fixed micro-batch of 64 rows x 7096 tokens could reach 514 GiB. Each budget holds one whole trajectory (7096).
ACTOR_TOKENS_PER_GPU=${ACTOR_TOKENS_PER_GPU:-16384}       # verl's default ppo_max_token_len_per_gpu
LOG_PROB_TOKENS_PER_GPU=${LOG_PROB_TOKENS_PER_GPU:-16384} # old-log-prob and reference passes
CRITIC_TOKENS_PER_GPU=${CRITIC_TOKENS_PER_GPU:-32768}     # verl's default: the value head has no vocabulary-wide output
# Micro-batches (USE_DYNAMIC_BSZ=False) must divide each GPU's share (verl 0.9.1 asserts it): 512 prompts x n /
# 8 GPUs = 64 rows per GPU per step (PPO; GRPO: 320), 256 x n / 8 = 32 per update (GRPO: 160). ferret's 128 for
# the log-prob passes does not divide 64. multinode/ lowers these for 16 GPUs (32 rows per GPU, 16 per update).
ACTOR_MICRO_BATCH=${ACTOR_MICRO_BATCH:-16}                # [ferret] ppo_micro_batch_size_per_gpu
CRITIC_MICRO_BATCH=${CRITIC_MICRO_BATCH:-32}              # [ferret] critic ppo_micro_batch_size_per_gpu
LOG_PROB_MICRO_BATCH=${LOG_PROB_MICRO_BATCH:-64}          # [here] old-log-prob, reference and value passes
# --- validation (the full test sets are eval_expandsearch.sh's job) -----------------------------------------
VAL_MAX_SAMPLES=${VAL_MAX_SAMPLES:-5120}                  # [here] a fixed random ~10% of the 51,713 test questions (ferret: 0.1); -1: all
VAL_BATCH_SIZE=${VAL_BATCH_SIZE:-$TRAIN_BATCH_SIZE}       # [here] a step's load at a time (ferret: 256); verl's null sends the whole file at once
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)                           # absolute: every Ray worker reads these paths
AGENT_LOOP_CONFIG=$RUN_DIR/agent_loops.yaml

# The agent loop's knobs live in its YAML (validated here; a bad value stops the recipe with the key named).
expandsearch agent-loop-config --output "$AGENT_LOOP_CONFIG" \
    --set "retriever_urls=[$RETRIEVER_URLS]" --set "max_queries=$NUM_VARIANTS" --set "topk=$TOPK" \
    --set "squeeze=$SQUEEZE" --set "max_turns=$MAX_TURNS" --set "protocol=$PROTOCOL" \
    "${AGENT_LOOP_SETTINGS[@]/#/--set=}" > /dev/null

DATA=(
    data.train_files="$TRAIN_FILE"
    data.val_files="$VAL_FILE"
    data.train_batch_size="$TRAIN_BATCH_SIZE"             # [ferret, SR1] 512 prompts per step (504 on 7 GPUs)
    data.max_prompt_length="$MAX_PROMPT_LENGTH"
    data.max_response_length="$MAX_RESPONSE_LENGTH"
    data.truncation=error                                 # [ferret] never cut a question; the doctor checks the longest prompts
    data.val_max_samples="$VAL_MAX_SAMPLES"               # a random sample, the same every run (data.seed)
    data.val_batch_size="$VAL_BATCH_SIZE"
    data.seed=42                                          # [here] the validation sample and the data order
)
ALGORITHM=(
    algorithm.adv_estimator="$ADV_ESTIMATOR"
    algorithm.use_kl_in_reward=False                      # [ferret] (Search-R1's PPO had KL 0.001 in the reward)
    algorithm.gamma=1.0                                   # [SR1] GAE gamma = lambda = 1
    algorithm.lam=1.0
)
ACTOR=(
    actor_rollout_ref.model.path="$MODEL_PATH"
    actor_rollout_ref.actor.optim.lr=1e-6                 # [ferret, SR1]
    actor_rollout_ref.actor.optim.lr_warmup_steps=100     # [ferret] (it overrides ferret's ratio 0.285; SR1: 0.285 of 1005 steps)
    actor_rollout_ref.actor.ppo_mini_batch_size="$PPO_MINI_BATCH_SIZE"   # [ferret, SR1] 256: 2 updates per step
    actor_rollout_ref.actor.use_kl_loss="$USE_KL_LOSS"
    actor_rollout_ref.actor.kl_loss_coef=0.001            # [ferret, SR1] GRPO's KL loss
    actor_rollout_ref.actor.kl_loss_type=low_var_kl       # [ferret, SR1]
    actor_rollout_ref.actor.entropy_coeff=0               # [ferret]
    actor_rollout_ref.ref.fsdp_config.param_offload=True  # [here] the reference model (GRPO only) waits on CPU
)
ROLLOUT=(
    actor_rollout_ref.rollout.name="$ROLLOUT_ENGINE"
    actor_rollout_ref.rollout.skip_tokenizer_init=False  # SGLang applies the loop's stop strings only with it (verl: True)
    actor_rollout_ref.rollout.n="$ROLLOUT_N"
    actor_rollout_ref.rollout.tensor_model_parallel_size=1    # [ferret, SR1]
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6      # [ferret, SR1] the rest holds FSDP and the index shard
    actor_rollout_ref.rollout.max_model_len="$MAX_MODEL_LEN"
    actor_rollout_ref.rollout.temperature=1.0             # [ferret, SR1] (validation: greedy, verl's val_kwargs)
    actor_rollout_ref.rollout.top_p=1.0                   # [ferret, SR1 v0.2]
)
MICRO_BATCHES=(                                           # every forward's size: tokens (dynamic) or rows
    actor_rollout_ref.actor.use_dynamic_bsz="$USE_DYNAMIC_BSZ"
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$ACTOR_TOKENS_PER_GPU"
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu="$ACTOR_MICRO_BATCH"
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz="$USE_DYNAMIC_BSZ"
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$LOG_PROB_TOKENS_PER_GPU"
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu="$LOG_PROB_MICRO_BATCH"
    actor_rollout_ref.ref.log_prob_use_dynamic_bsz="$USE_DYNAMIC_BSZ"
    actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="$LOG_PROB_TOKENS_PER_GPU"
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu="$LOG_PROB_MICRO_BATCH"
    critic.use_dynamic_bsz="$USE_DYNAMIC_BSZ"
    critic.ppo_max_token_len_per_gpu="$CRITIC_TOKENS_PER_GPU"
    critic.forward_max_token_len_per_gpu="$CRITIC_TOKENS_PER_GPU"
    critic.ppo_micro_batch_size_per_gpu="$CRITIC_MICRO_BATCH"
    critic.forward_micro_batch_size_per_gpu="$LOG_PROB_MICRO_BATCH"
)
AGENT=(
    actor_rollout_ref.rollout.agent.agent_loop_config_path="$AGENT_LOOP_CONFIG"   # rows say agent_name=expandsearch_agent
)
if [[ "${USE_V1,,}" == false || "$USE_V1" == 0 ]]; then  # the legacy trainer logs timing_s/search/* every step
    AGENT+=(+actor_rollout_ref.rollout.agent.agent_loop_manager_class=expandsearch_verl.search_metrics.SearchMetricsAgentLoopManager)
fi
CRITIC=(
    critic.model.path="$CRITIC_MODEL_PATH"
    critic.optim.lr=1e-5                                  # [ferret, SR1]
    critic.optim.lr_warmup_steps=15                       # [ferret] (SR1: ratio 0.015)
)
REWARD=(
    reward.custom_reward_function.path=pkg://expandsearch_verl.reward
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.shaping="$REWARD_SHAPING"
)
TRAINER=(
    trainer.use_v1="$USE_V1"
    trainer.nnodes="$NNODES"
    trainer.n_gpus_per_node="$GPUS_PER_NODE"
    trainer.total_training_steps="$TOTAL_TRAINING_STEPS"
    trainer.total_epochs=15                               # [ferret, SR1] an upper bound; the steps above stop first
    trainer.critic_warmup=0                               # [ferret, SR1]
    trainer.save_freq=100                                 # [ferret, SR1]
    trainer.test_freq=100                                 # [ferret, SR1 v0.2]
    trainer.val_before_train="$VAL_ONLY"                  # [ferret] False when training
    trainer.val_only="$VAL_ONLY"
    trainer.logger="$LOGGER"
    trainer.project_name=expandsearch
    trainer.experiment_name="$EXPERIMENT_NAME"
    trainer.default_local_dir="$RUN_DIR/checkpoints"
    trainer.validation_data_dir="$RUN_DIR/validation"     # one JSONL of every validation trajectory per test
)
# DEVICE=cpu adds only the CPU backend's overrides (expandsearch_verl/cpu/overrides.py says why each) after the
# recipe's and before yours, and the two variables that make verl load it; a GPU-only argument or variable of
# yours (one the backend's overrides would replace) stops here.
DEVICE_ENV=()
DEVICE_OVERRIDES=()
refuse_on_cpu() {  # VAR=VALUE, why: a GPU-only variable the user set
    echo "$1: with DEVICE=cpu leave it out ($2)" >&2
    exit 2
}
case "$DEVICE" in
    gpu) ;;
    cpu)
        if [[ "${USE_V1,,}" == true || "$USE_V1" == 1 ]]; then
            refuse_on_cpu "USE_V1=$USE_V1" "the CPU backend runs the legacy trainer"
        fi
        if [[ "$ROLLOUT_ENGINE" != vllm ]]; then refuse_on_cpu "ROLLOUT=$ROLLOUT_ENGINE" "DEVICE=cpu uses hf"; fi
        if [[ "$NNODES" != 1 ]]; then refuse_on_cpu "NNODES=$NNODES" "DEVICE=cpu runs on this machine"; fi
        CPU_OVERRIDES=$("$PYTHON" -m expandsearch_verl.cpu overrides "$@")
        mapfile -t DEVICE_OVERRIDES <<< "$CPU_OVERRIDES"
        mapfile -t DEVICE_ENV < <("$PYTHON" -m expandsearch_verl.cpu env)
        export "${DEVICE_ENV[@]}"
        ;;
    *) echo "DEVICE=$DEVICE: must be gpu or cpu" >&2; exit 2 ;;
esac
OVERRIDES=("${DATA[@]}" "${ALGORITHM[@]}" "${ACTOR[@]}" "${ROLLOUT[@]}" "${MICRO_BATCHES[@]}" "${AGENT[@]}" "${CRITIC[@]}"
           "${REWARD[@]}" "${TRAINER[@]}" "${DEVICE_OVERRIDES[@]}" "$@")
if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' ${DEVICE_ENV[@]:+env "${DEVICE_ENV[@]}"} "$PYTHON" -m verl.trainer.main_ppo "${OVERRIDES[@]}"
    exit 0
fi
if [[ "$SKIP_DOCTOR" != 1 ]]; then
    expandsearch doctor --train-gpus "$TRAIN_GPUS" --retriever-gpus "$RETRIEVER_GPUS" --squeezer-gpus "$SQUEEZER_GPUS" \
        "${DOCTOR_FLAGS[@]}" "${OVERRIDES[@]}"
fi
exec "$PYTHON" -m verl.trainer.main_ppo "${OVERRIDES[@]}"
