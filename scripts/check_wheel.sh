#!/usr/bin/env bash
# Install check: build a wheel from this checkout's files, install it into a fresh venv outside
# the checkout, and use it from a folder outside the checkout: `codec list`, then encode / decode /
# info with every shipped .ncf image codec (elic-int, elic, mlic, mbt-mean-int, mbt-mean,
# wavelet, inr with its fast preset) on a small image, and the one-line error of `codec bench rd`
# when no data folder is set.
#
#   PYTHON=.venv/bin/python bash scripts/check_wheel.sh        (what `make check-wheel` runs)
#
# The venv gets no dependencies of its own: a .pth line adds PYTHON's site-packages after the
# venv's own. Python runs the .pth files of site folders only, so an editable neuralcodec
# installed there (its finder is started by a .pth) cannot shadow the wheel's copy; the check
# asserts that neuralcodec and its weights load from the venv. Nothing is downloaded.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
PY=$(command -v "${PYTHON:-$repo/.venv/bin/python}") || { echo "error: no Python at ${PYTHON:-}" >&2; exit 1; }
case "$PY" in /*) ;; *) PY=$PWD/$PY ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/ncf-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
case "$work/" in "$repo"/*) echo "error: $work is inside the checkout" >&2; exit 1 ;; esac
start=$(date +%s)

step() { printf '\n== %s (%ss)\n' "$*" "$(($(date +%s) - start))"; }
fail() { echo "error: $*" >&2; exit 1; }

step "copy the checkout's files (tracked and new, not ignored) to $work/src"
mkdir "$work/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | (cd "$repo" && xargs -0 cp -P --parents -t "$work/src" 2>/dev/null || true)
[ -f "$work/src/pyproject.toml" ] || fail "could not copy the checkout"

step "build the wheel"
"$PY" -m pip wheel -q --no-deps --no-build-isolation "$work/src" -w "$work/whl"
wheel=$(ls "$work"/whl/neuralcodec-*.whl)
echo "$(basename "$wheel"): $(du -h "$wheel" | cut -f1)"
"$PY" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for n in names:
    if n.startswith("neuralcodec/weights/") or n.endswith(".so"):
        print("  " + n)
EOF

step "install it into a fresh venv, dependencies from $PY"
"$PY" -m venv --without-pip "$work/venv"
"$PY" -m pip --python "$work/venv/bin/python" install -q --no-deps --no-index "$wheel"
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))' > "$site/_neuralcodec_deps.pth"

mkdir "$work/run"
cd "$work/run"
# One thread unless told otherwise: on a busy machine the inr fit with two threads can take 25
# times as long (spinning OpenMP workers), which tells nothing about the installation.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
run() { env -u PYTHONPATH -u NEURALCODEC_WEIGHTS -u NEURALCODEC_DATA -u NEURALCODEC_REFERENCE "$@"; }
vpy="$work/venv/bin/python"
codec="$work/venv/bin/codec"

step "import from $PWD"
run "$vpy" - "$work/venv" <<'EOF'
import sys
import neuralcodec
from neuralcodec.codecs.weights import weights_dir
print("neuralcodec:", neuralcodec.__file__)
print("weights:    ", weights_dir())
for path in (neuralcodec.__file__, str(weights_dir())):
    if not path.startswith(sys.argv[1] + "/"):
        sys.exit(f"error: {path} is not inside the fresh venv")
EOF

step "codec list"
run "$codec" list | tee list.txt
for name in elic-int elic mlic mbt-mean-int mbt-mean wavelet; do
  grep -Eq "^$name +.* yes$" list.txt || fail "codec list does not show $name with its weights"
done

run "$vpy" -c "from PIL import Image; Image.open('$repo/examples/sample.png').crop((304, 200, 432, 296)).save('img.png')"
for spec in elic-int elic mlic mbt-mean-int mbt-mean wavelet "inr --preset fast"; do
  name=${spec%% *}
  step "codec encode / decode / info: $spec"
  # shellcheck disable=SC2086  # $spec holds the codec name and its options
  run "$codec" encode img.png "$name.ncf" --codec $spec
  run "$codec" decode "$name.ncf" "$name.png"
  run "$codec" info "$name.ncf" | tee info.txt
  grep -Eq "^decodable here +yes$" info.txt || fail "$name.ncf is not decodable here"
  run "$vpy" -c "from PIL import Image; import sys; sys.exit(Image.open('$name.png').size != (128, 96))" \
    || fail "$name.png does not have the input's size"
done

step "codec bench rd without a data folder"
if run "$codec" bench rd --codecs jpeg --out rd 2> err.txt; then fail "bench rd ran without data"; fi
cat err.txt
grep -q "^error: no data folder: set NEURALCODEC_DATA" err.txt || fail "unexpected error text"

step "wheel check passed"
