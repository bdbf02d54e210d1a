#!/usr/bin/env bash
# The main job on its built-in default: sets up a fresh machine, builds, pretrains a small BLIP on
# generated image-text pairs, shifts the task, and adapts the frozen model with Aurora
# (examples/aurora_retrieval.c; options pass through, e.g. --variant code --rank 16).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/examples/aurora_retrieval "$@"
