#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, in one command (docs/cuda.md, "Checking on a GPU
# machine"): build with CUDA for the GPU at hand (the test suite and the petal command only), run
# the GPU suite with PETAL_REQUIRE_GPU=1 (so an unusable GPU fails instead of skipping), its
# determinism cases again on their own, the suite's kernel cases under compute-sanitizer's
# memcheck, racecheck, synccheck and initcheck (a missing compute-sanitizer fails the check), time
# `petal bench block --device cuda` in f32, tf32 and bf16 (and PyTorch's twin,
# tools/bench_torch.py, side by side when torch sees a GPU), and write one summary file. Every step
# runs under `timeout` with what is left of the time limit (and at most its own cap: a slow
# sanitizer cannot starve the steps after it); a step that cannot start in time is reported as not
# run, and the script still writes the summary and exits.
#
#   bash scripts/gpu-check.sh [--build-dir DIR] [--summary FILE] [--minutes N] [--dry-run]
#
# Defaults: build-gpu/, build-gpu/gpu-check/summary.txt, 8 minutes (one H100: the build takes most
# of it). --dry-run prints the steps' commands and caps instead of running them. Exits 0 only if
# every step ran and passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

build_dir=build-gpu
summary=""
minutes=8
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --summary) summary="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    *) echo "gpu-check: unknown argument '$1' (see the head of $0)" >&2; exit 2 ;;
  esac
done
case "$minutes" in
  '' | *[!0-9]*) echo "gpu-check: --minutes takes a whole number, got '$minutes'" >&2; exit 2 ;;
esac
logs="$build_dir/gpu-check"
summary="${summary:-$logs/summary.txt}"
mkdir -p "$logs" "$(dirname "$summary")"
deadline=$(($(date +%s) + minutes * 60))
failed=0

note() { echo "$*" | tee -a "$summary"; }

# run_step [--cap SECONDS] NAME COMMAND...: runs COMMAND with the time left (less a reserve for
# the summary), at most SECONDS, its output in $logs/NAME.log; records passed, FAILED (exit
# status), CUT (time limit or cap) or not run.
reserve=15
run_step() {
  local cap=""
  if [ "$1" = --cap ]; then cap="$2"; shift 2; fi
  local name="$1" log="$logs/$1.log" left status start
  shift
  if [ "$dry_run" = 1 ]; then
    note "$name: would run${cap:+ (at most $cap s)}: $(printf '%q ' "$@")"
    return 0
  fi
  left=$((deadline - $(date +%s) - reserve))
  if [ "$left" -lt 10 ]; then
    note "$name: NOT RUN (the ${minutes}-minute limit is reached)"
    failed=1
    return 1
  fi
  if [ -n "$cap" ] && [ "$cap" -lt "$left" ]; then left="$cap"; fi
  start=$(date +%s)
  # TERM at the limit, KILL 5 s later: the step ends before the reserve is spent.
  timeout --signal=TERM --kill-after=5 "$left" "$@" >"$log" 2>&1
  status=$?
  local took=$(($(date +%s) - start))
  if [ "$status" = 0 ]; then
    note "$name: passed (${took} s)"
  elif [ "$status" = 124 ] || [ "$status" = 137 ]; then
    note "$name: CUT at the time limit after ${took} s (log: $log)"
    failed=1
  else
    note "$name: FAILED, exit status $status (${took} s, log: $log)"
    failed=1
  fi
  tail -n 15 "$log" | sed 's/^/    /' >>"$summary"
  return "$status"
}

# bench_block_precisions: one ViT-B block at batch 32, forward and backward, with f32, TF32 and bf16
# GEMM inputs (docs/cuda.md "Mixed precision"); each next to PyTorch's when torch has CUDA.
bench_block_precisions() {
  local shape=(--batch 32 --tokens 197 --dim 768 --heads 12 --device cuda) torch=0 p
  if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
  then
    torch=1
  else
    note "bench_torch_block: not run, python3 has no torch with CUDA"
  fi
  for p in f32 tf32 bf16; do
    run_step --cap 60 "bench_block_$p" "$build_dir/petal" bench block "${shape[@]}" \
      --precision "$p"
    if [ "$torch" = 1 ]; then
      run_step --cap 60 "bench_torch_block_$p" python3 tools/bench_torch.py block "${shape[@]}" \
        --precision "$p"
    fi
  done
}

: >"$summary"
note "petal gpu-check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if command -v nvidia-smi >/dev/null; then
  note "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | head -n 1)"
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')
else
  note "GPU: nvidia-smi not found (no NVIDIA driver?)"
  arch=""
fi
# Only the GPU at hand's architecture: the build takes a fraction of the default's time.
arch_option=()
if [ -n "$arch" ]; then
  arch_option=("-DPETAL_CUDA_ARCHS=$arch")
fi

gpu_suite="$build_dir/tests/test_cuda"
if run_step configure cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DPETAL_CUDA=ON \
  -DPETAL_WERROR=ON "${arch_option[@]}" &&
  run_step build cmake --build "$build_dir" -j "$(nproc)" --target test_cuda petal_cli; then
  run_step ctest_gpu env PETAL_REQUIRE_GPU=1 ctest --test-dir "$build_dir" -L gpu \
    --output-on-failure
  # The fused attention's two runs in one process must give the same bits (no atomics).
  run_step --cap 60 determinism env PETAL_REQUIRE_GPU=1 CK_RUN_CASE="fused attention" \
    "$gpu_suite"
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$sanitizer" ] || [ "$dry_run" = 1 ]; then
    # Each tool follows Check's forked children. The whole suite under four tools does not fit
    # the limit: they run the cases tagged "sanitize", every kernel at small sizes (the op table)
    # and the fused attention over many tiles.
    for tool in memcheck racecheck synccheck initcheck; do
      run_step --cap 60 "$tool" env PETAL_REQUIRE_GPU=1 CK_INCLUDE_TAGS=sanitize "$sanitizer" \
        --tool "$tool" --target-processes all --error-exitcode 1 "$gpu_suite"
    done
  else
    note "memcheck, racecheck, synccheck, initcheck: NOT RUN, compute-sanitizer is not installed"
    failed=1
  fi
  bench_block_precisions
else
  note "ctest_gpu, determinism, memcheck, racecheck, synccheck, initcheck, bench_block: NOT RUN, the build did not complete"
fi

if [ "$dry_run" = 1 ]; then
  note "dry run: nothing was run"
elif [ "$failed" = 0 ]; then
  note "RESULT: every step ran and passed"
else
  note "RESULT: FAILED (logs in $logs)"
fi
echo "summary: $summary"
exit "$failed"
