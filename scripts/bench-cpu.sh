#!/usr/bin/env bash
# petal against PyTorch on this CPU, side by side in one run (issue: CPU speed on every x86
# machine): the ViT-B block (4x197 tokens, frozen, input requiring grad) and one Aurora training
# step of BLIP-base retrieval (code variant, rank 32, batch 4, 224 px), at 1 and 2 threads, on
# each CPU path this machine can run of avx512 and avx2. The avx2 rows stand in for an AVX2-only
# machine: petal's avx2 path (PETAL_CPU=avx2), OpenBLAS's Haswell kernels for both sides, and
# PyTorch's AVX2 kernels (ATEN_CPU_CAPABILITY=avx2).
#
#   bash scripts/bench-cpu.sh [--no-train] [--rounds N] [OUT.jsonl]
#
# The block runs N rounds (default 3), petal and PyTorch alternating, and the summary at the end
# gives each row's medians: on a shared (virtual) machine one run of either can land in a slow
# minute, and a single pair of runs then says more about the neighbours than about the code.
# Needs a build (build/petal), Debian's python3-torch and, for the training step, the released
# Aurora and BLIP code and the venv described in tools/bench_torch.py (AURORA, BLIP, VENV below).
# Not run by CI: about 10 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
train=1 rounds=3
while [ $# -gt 0 ]; do
  case $1 in
  --no-train) train=0 ;;
  --rounds)
    rounds=$2
    shift
    ;;
  *) break ;;
  esac
  shift
done
out=${1:-bench-cpu.jsonl}
AURORA=${AURORA:-/tmp/aurora} BLIP=${BLIP:-/tmp/blip} VENV=${VENV:-tools/.venv415}
petal=build/petal
: >"$out"

cpu_can() { PETAL_CPU=$1 "$petal" bench gemm --m 8 --n 8 --k 8 --iters 1 >/dev/null 2>&1; }

run() { # LABEL COMMAND...: one JSON line, tagged, into $out and onto the screen
  local label=$1
  shift
  local line
  line=$("$@" | tail -n 1)
  echo "{\"run\": \"$label\", ${line#\{}" | tee -a "$out"
}

for path in avx512 avx2; do
  if ! cpu_can $path; then
    echo "== $path: this CPU cannot run it, skipped"
    continue
  fi
  blas=SkylakeX aten=avx512
  [ $path = avx2 ] && blas=Haswell aten=avx2
  export OPENBLAS_CORETYPE=$blas ATEN_CPU_CAPABILITY=$aten PETAL_CPU=$path
  for threads in 1 2; do
    echo "== $path, $threads thread(s)"
    for ((r = 0; r < rounds; r++)); do
      run "petal $path t$threads" env PETAL_NUM_THREADS=$threads "$petal" bench block --iters 10
      run "torch $path t$threads" /usr/bin/python3 tools/bench_torch.py block --threads $threads \
        --iters 10
    done
    [ $train = 1 ] || continue
    run "petal $path t$threads" env PETAL_NUM_THREADS=$threads "$petal" bench train \
      --model blip-base-retrieval --steps 3
    run "torch $path t$threads" "$VENV/bin/python" tools/bench_torch.py train --threads $threads \
      --iters 3 --aurora-repo "$AURORA" --blip-repo "$BLIP"
  done
done
echo "== medians over the rounds (ms; the floor ratio is petal's step over its GEMM floor)"
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("bench") != "block":
        continue
    impl, path, threads = d["run"].split()
    r = rows.setdefault((path, threads), {"petal": [], "torch": [], "floor": []})
    r[impl].append(d["fwd_ms"] + d["bwd_ms"])
    if impl == "petal":
        r["floor"].append(d["step_over_floor"])
for (path, threads), r in rows.items():
    p, t = statistics.median(r["petal"]), statistics.median(r["torch"])
    print(f"block {path} {threads}: petal {p:.1f} (over floor {statistics.median(r['floor']):.3f}), "
          f"torch {t:.1f}, petal / torch {p / t:.3f}; rounds {len(r['petal'])}")
PY
echo "== results in $out"
