#!/usr/bin/env bash
# The main job on its built-in default: sets up a fresh machine, builds petal, writes the
# synthetic vision-language data set, pretrains a small BLIP on it (cached: skipped when
# runs/synth_pretrain/last.h5 exists), then adapts the frozen model to the shifted-camera images
# with each PETL method, full fine-tuning and the frozen model, for retrieval and VQA, and prints
# one table. Every step is a `petal` command a user can run alone (README "The main job").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
petal=./build/petal
[ -f data/synth/vocab.txt ] || "$petal" data synth data/synth >/dev/null
if [ ! -f runs/synth_pretrain/last.h5 ]; then
  rm -rf runs/synth_pretrain
  echo "pretraining the small BLIP (configs/synth_pretrain.yaml)"
  "$petal" train configs/synth_pretrain.yaml --out runs/synth_pretrain >runs.pretrain.log
  mv runs.pretrain.log runs/synth_pretrain/stdout.log
fi

# Full fine-tuning moves every weight: it takes the pretraining's learning rate, not a PETL one,
# and has no PETL tensors for the decoder to share (synth_vqa.yaml's petl.share_decoder).
declare -A extra=([full]="--set init_lr=2e-3 --set petl.share_decoder=false")
methods=(aurora lora vera unitrans adapter full frozen)

# One method on one task; its log goes into the run folder.
adapt() {
  local m=$1 task=$2 out=runs/synth_$2_$1
  rm -rf "$out"
  # shellcheck disable=SC2086 # extra options split on purpose
  "$petal" train "configs/synth_$task.yaml" --set "petl.methods=$m" ${extra[$m]:-} \
    --out "$out" >"$out.log" || { cat "$out.log" >&2; return 1; }
  mv "$out.log" "$out/stdout.log"
}

# The configs run one compute thread each: retrieval and VQA of a method side by side fill two
# cores.
rows=()
for m in "${methods[@]}"; do
  adapt "$m" retrieval &
  retrieval=$!
  adapt "$m" vqa || exit 1
  wait "$retrieval" || exit 1
  rows+=("runs/synth_retrieval_$m,runs/synth_vqa_$m")
done
echo
echo "Adapting the pretrained BLIP to a camera with rotated colour channels (test split):"
"$petal" runs "${rows[@]}" --metrics txt_r1,txt_r5,txt_r10,img_r1,img_r5,img_r10,vqa_acc
