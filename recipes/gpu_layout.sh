#!/usr/bin/env bash
# ExpandSearch | the GPU layout of a node: one rule, sourced by the training recipe, launch_squeezer.sh and launch_retriever.sh
#
#   bash recipes/gpu_layout.sh                                    # print the layout the three scripts resolve here
#   CUDA_VISIBLE_DEVICES=4,5,6,7 bash recipes/gpu_layout.sh       # what a scheduler's allocation gives
#   TP=2 bash recipes/gpu_layout.sh                               # a squeezer on two GPUs
#
# The rule (docs/gpu-layout.md "Which GPUs each script takes"); a variable set in the environment wins, empty
# included where it says so:
#   visible GPUs    CUDA_VISIBLE_DEVICES when set (the indices SLURM or Kubernetes gave), else every GPU
#                   nvidia-smi lists, else 0-7 (no nvidia-smi: a dry run on a login node)
#   SQUEEZER_GPUS   the last TP (the squeezer's tensor-parallel size, default 1) visible GPUs; empty: no local squeezer
#   TRAIN_GPUS      the visible GPUs without SQUEEZER_GPUS
#   RETRIEVER_GPUS  TRAIN_GPUS: an index shard beside each trainer; empty: the index on the CPU
# Each script then exports CUDA_VISIBLE_DEVICES as the GPUs it uses. A hand-set value naming a GPU that is not
# visible, or a trainer's GPU that the squeezer also takes, stops the script with both settings and the fix named.
set -euo pipefail

# The GPUs this node gives the job, comma-separated, and where that list came from (for the messages).
if [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    VISIBLE_GPUS=$CUDA_VISIBLE_DEVICES
    VISIBLE_FROM="CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
elif LISTED=$(nvidia-smi --query-gpu=index --format=csv,noheader 2> /dev/null) && [[ -n "$LISTED" ]]; then
    VISIBLE_GPUS=$(tr -d ' ' <<< "$LISTED" | paste -sd, -)
    VISIBLE_FROM="nvidia-smi's GPUs $VISIBLE_GPUS"
else
    VISIBLE_GPUS=0,1,2,3,4,5,6,7
    VISIBLE_FROM="the 8 GPUs assumed without nvidia-smi"
fi
if [[ ! "$VISIBLE_GPUS" =~ ^([0-9]+(,[0-9]+)*)?$ ]]; then
    echo "$VISIBLE_FROM: the recipes take GPU indices (0,1,...); set CUDA_VISIBLE_DEVICES to the indices nvidia-smi -L shows" >&2
    exit 2
fi
IFS=, read -r -a VISIBLE_IDS <<< "$VISIBLE_GPUS"

# layout_without LIST DROP: the ids of LIST not in DROP, comma-separated, in LIST's order.
layout_without() {
    local id kept=()
    local -a ids drop
    IFS=, read -r -a ids <<< "$1"
    IFS=, read -r -a drop <<< "$2"
    for id in "${ids[@]}"; do
        [[ " ${drop[*]} " == *" $id "* ]] || kept+=("$id")
    done
    (IFS=,; echo "${kept[*]}")
}

# layout_ordinals LIST: 0,1,...: the same GPUs numbered as a process that sees only LIST does.
layout_ordinals() {
    local -a ids
    IFS=, read -r -a ids <<< "$1"
    seq -s, 0 $((${#ids[@]} - 1))
}

# layout_visible NAME: stop unless every id in $NAME is a visible GPU, given once.
layout_visible() {
    local name=$1 value=${!1} id
    local -a ids
    IFS=, read -r -a ids <<< "$value"
    if [[ ! "$value" =~ ^([0-9]+(,[0-9]+)*)?$ ]]; then
        echo "$name=$value: expected GPU indices separated by commas, from $VISIBLE_GPUS ($VISIBLE_FROM)" >&2
        exit 2
    fi
    for id in "${ids[@]}"; do
        if [[ " ${VISIBLE_IDS[*]} " != *" $id "* ]]; then
            echo "$name=$value: GPU $id is not among $VISIBLE_FROM; pick from $VISIBLE_GPUS or unset $name" >&2
            exit 2
        fi
    done
    if [[ $(printf '%s\n' "${ids[@]}" | sort | uniq -d) ]]; then
        echo "$name=$value: a GPU is listed twice" >&2
        exit 2
    fi
}

# layout_apart TRAIN_NAME SQUEEZER_NAME: stop if the trainer's and the squeezer's GPUs share one.
layout_apart() {
    local shared
    shared=$(layout_without "${!1}" "$(layout_without "${!1}" "${!2}")")
    if [[ -n "$shared" ]]; then
        echo "$1=${!1} and $2=${!2} share GPU $shared: the squeezer's vLLM takes 90% of its GPUs;" \
            "set $1=$(layout_without "${!1}" "${!2}"), or SQUEEZER_GPUS= for a remote squeezer, or unset both for the default" \
            "$(layout_defaults)" >&2
        exit 2
    fi
}

# layout_last N: the last N visible GPUs, comma-separated.
layout_last() {
    (IFS=,; echo "${VISIBLE_IDS[*]: -$1}")
}

layout_defaults() {
    echo "TRAIN_GPUS=$(layout_without "$VISIBLE_GPUS" "$(layout_last "$SQUEEZER_TP")") SQUEEZER_GPUS=$(layout_last "$SQUEEZER_TP")"
}

SQUEEZER_TP=${TP:-1}
if [[ ! "$SQUEEZER_TP" =~ ^[1-9][0-9]*$ ]]; then
    echo "TP=$SQUEEZER_TP: the squeezer's tensor-parallel size, a positive integer" >&2
    exit 2
fi
TRAIN_GPUS_GIVEN=${TRAIN_GPUS:+1}                   # set by hand: the squeezer must keep off it
if [[ -n "${SQUEEZER_GPUS+set}" ]]; then
    layout_visible SQUEEZER_GPUS
else
    if ((${#VISIBLE_IDS[@]} > 0 && SQUEEZER_TP > ${#VISIBLE_IDS[@]})); then
        echo "TP=$SQUEEZER_TP: the squeezer would take more GPUs than $VISIBLE_FROM holds; set SQUEEZER_GPUS= for a remote squeezer" >&2
        exit 2
    fi
    SQUEEZER_GPUS=$(layout_last "$SQUEEZER_TP")
fi
if [[ -n "$TRAIN_GPUS_GIVEN" ]]; then
    layout_visible TRAIN_GPUS
    layout_apart TRAIN_GPUS SQUEEZER_GPUS
else
    TRAIN_GPUS=$(layout_without "$VISIBLE_GPUS" "$SQUEEZER_GPUS")
fi
RETRIEVER_GPUS=${RETRIEVER_GPUS-$TRAIN_GPUS}
layout_visible RETRIEVER_GPUS

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "visible: $VISIBLE_FROM"
    echo "TRAIN_GPUS=$TRAIN_GPUS RETRIEVER_GPUS=$RETRIEVER_GPUS SQUEEZER_GPUS=$SQUEEZER_GPUS"
fi
