#!/usr/bin/env bash
# The main job on its built-in default: sets up a fresh machine, builds, and trains the example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/examples/02_mlp "$@"
