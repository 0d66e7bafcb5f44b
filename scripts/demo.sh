#!/usr/bin/env bash
# The main job end to end on the embedded digits data (no download, a few minutes on 2 CPU cores):
#
#   search (ENAS, micro space, smoke preset) -> derive the best architecture -> train it from
#   scratch (smoke preset) -> evaluate it on the test set -> draw it and the training curves.
#
# The architecture travels between the commands on a pipe; tee keeps a copy in best.arch.
# Everything lands in DEMO_DIR (default runs/demo):
#   search/   the search run          best.arch   the derived architecture (one record)
#   final/    the final-training run  best.png    its picture
#   search.png, curves.png            the curves of the search and of the final training
# The script removes nothing: if DEMO_DIR already exists it stops and says so; delete the
# folder or pick another one (DEMO_DIR=runs/demo2 bash scripts/demo.sh).
# `make demo` runs it with the project's virtual environment on PATH.
set -euo pipefail

DEMO_DIR="${DEMO_DIR:-runs/demo}"

say() { printf 'demo: %s\n' "$*" >&2; }

if ! command -v enastool >/dev/null 2>&1; then
    say "the enastool command is not on PATH: run 'make setup' and then 'make demo' (or activate .venv)"
    exit 2
fi
if [ -e "$DEMO_DIR" ]; then
    say "$DEMO_DIR already exists and is left as it is; remove it (rm -r $DEMO_DIR) or choose another folder: DEMO_DIR=runs/demo2 bash scripts/demo.sh"
    exit 2
fi
mkdir -p "$DEMO_DIR"

started=$SECONDS
step() { say "[$((SECONDS - started))s] $*"; }

step "1/5 search: ENAS on the micro space (smoke preset, digits)"
enastool search --space micro --strategy enas --preset smoke --out "$DEMO_DIR/search"

step "2/5 derive the best architecture and train it from scratch (smoke preset)"
enastool derive "$DEMO_DIR/search" --top 1 \
    | tee "$DEMO_DIR/best.arch" \
    | enastool train-final - --preset smoke --out "$DEMO_DIR/final"

step "3/5 evaluate the trained network on the test set"
enastool evaluate "$DEMO_DIR/final"

step "4/5 draw the architecture"
enastool render "$DEMO_DIR/best.arch" -o "$DEMO_DIR/best.png"

step "5/5 draw the training curves and list the runs"
enastool plot "$DEMO_DIR/search" -o "$DEMO_DIR/search.png"
enastool plot "$DEMO_DIR/final" -o "$DEMO_DIR/curves.png"
enastool runs "$DEMO_DIR" >&2

step "done: the architecture is $DEMO_DIR/best.arch, its picture $DEMO_DIR/best.png, the curves $DEMO_DIR/curves.png (final) and $DEMO_DIR/search.png, the runs $DEMO_DIR/search and $DEMO_DIR/final"
