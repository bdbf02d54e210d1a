#!/usr/bin/env bash
# Sets up a fresh machine, builds with warnings as errors, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DPETAL_WERROR=ON
cd build
ctest --output-on-failure -j "$(nproc)"
