#!/usr/bin/env bash
# Builds one libFuzzer target, tests/fuzz/fuzz_<TARGET>.c, with clang's libFuzzer,
# AddressSanitizer (leaks included) and UndefinedBehaviorSanitizer against a clang build of the
# library sources in build-fuzz-io/, then fuzzes it from the seed corpus tests/fuzz/corpus/<TARGET>/.
# Not part of the CMake build or CI.
#
#   bash scripts/fuzz.sh TARGET [SECONDS]   # TARGET: pth, safetensors, checkpoint (or any other
#                                           # tests/fuzz/fuzz_*.c); SECONDS: default 600, 0 builds
#
# Needs clang and libomp-dev. New inputs go to build-fuzz-io/corpus/<TARGET>/ (the committed seeds
# stay as they are); a crashing input is saved in build-fuzz-io/artifacts/ and the script exits
# non-zero. libhdf5, OpenBLAS and the other system libraries are not instrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: bash scripts/fuzz.sh TARGET [SECONDS]}
seconds=${2:-600}
build=build-fuzz-io
source="tests/fuzz/fuzz_$target.c"
[ -f "$source" ] || { echo "no fuzz target $source" >&2; exit 2; }

CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPETAL_NATIVE=OFF \
  -DPETAL_CUDA=OFF -DBUILD_TESTING=OFF -DPETAL_SANITIZE=address,undefined,fuzzer-no-link >/dev/null
cmake --build "$build" --target petal_static -j 2 >/dev/null
# The optional engines the library was built with (cmake/mpi.cmake, cmake/video.cmake find them
# with these same modules) are linked too.
modules="openblas hdf5 libutf8proc stb yaml-0.1 sleef"
for m in mpi-c libavformat libavcodec libswscale libavutil; do
  if pkg-config --exists "$m"; then modules="$modules $m"; fi
done
# shellcheck disable=SC2046,SC2086 # pkg-config's flags and the module list are meant to split
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fopenmp -I. \
  -D_GNU_SOURCE -DPETAL_TEST_DATA="\"$PWD/tests/data\"" "$source" "$build/libpetal.a" \
  $(pkg-config --cflags --libs $modules) -lm -o "$build/fuzz_$target"
echo "built $build/fuzz_$target"
[ "$seconds" -gt 0 ] || exit 0

mkdir -p "$build/corpus/$target" "$build/artifacts"
"$build/fuzz_$target" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$build/artifacts/" "$build/corpus/$target" \
  "tests/fuzz/corpus/$target"
