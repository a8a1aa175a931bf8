#!/usr/bin/env bash
# ExpandSearch | data | wiki-18 corpus + E5 flat index (Search-R1's published files) | any node with ~150 GB free disk
#
#   bash recipes/download_wiki18.sh                      # into data/wiki18
#   WIKI18_DIR=/shared/wiki18 bash recipes/download_wiki18.sh
#   DRY_RUN=1 bash recipes/download_wiki18.sh            # print the commands
#
# What comes down (Hugging Face datasets of the Search-R1 authors, used by Search-R1 and ferret alike):
#   PeterJinGo/wiki-18-corpus    wiki-18.jsonl.gz: 21,015,324 passages of ~100 words, {"id", "contents": "\"Title\"\ntext"}
#   PeterJinGo/wiki-18-e5-index  part_aa + part_ab: one faiss IndexFlatIP of intfloat/e5-base-v2 embeddings (768-d,
#                                fp32, ~65 GB), rows in corpus order; concatenated here into e5_Flat.index
# The retriever reads the .jsonl.gz directly and converts it once into memory-mapped arrays (minutes, first start only).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WIKI18_DIR=${WIKI18_DIR:-$REPO_ROOT/data/wiki18}
DRY_RUN=${DRY_RUN:-0}

run() {
    if [[ "$DRY_RUN" == 1 ]]; then printf '%s\n' "$*"; else "$@"; fi
}

run mkdir -p "$WIKI18_DIR"
run hf download PeterJinGo/wiki-18-corpus --repo-type dataset --local-dir "$WIKI18_DIR"
run hf download PeterJinGo/wiki-18-e5-index --repo-type dataset --local-dir "$WIKI18_DIR" --include "part_*"
if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "cat $WIKI18_DIR/part_aa $WIKI18_DIR/part_ab > $WIKI18_DIR/e5_Flat.index"
else
    cat "$WIKI18_DIR/part_aa" "$WIKI18_DIR/part_ab" > "$WIKI18_DIR/e5_Flat.index"
    rm "$WIKI18_DIR/part_aa" "$WIKI18_DIR/part_ab"
fi
echo "corpus: $WIKI18_DIR/wiki-18.jsonl.gz  index: $WIKI18_DIR/e5_Flat.index" >&2
