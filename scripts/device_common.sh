# Shared start of the GPU training jobs (scripts/device_train_*.sh); sourced, not run.
#
# Before a job, here: `python scripts/device_pack.py --out devdata/crops` (28 MiB of crops;
# devdata/ is ignored by git). The tracked files travel with the job and, with the pack, must
# stay under 64 MiB: move the weights files the job does not read out of the checkout for the
# run and put them back afterwards with `git checkout -- weights`, e.g. for a job that reads
# only elic-int:
#   mkdir -p ../weights-aside && for f in weights/*.safetensors; do
#     [ "$f" = weights/elic-int.safetensors ] || mv "$f" ../weights-aside/; done
# Then run the job there with `carry: ["devdata"]`. Every job also runs on a CPU for a check:
#   DEVICE=cpu MINUTES=0.3 BATCH=2 OUT=/tmp/x bash scripts/device_train_NAME.sh
# Environment: DEVICE (cuda), MINUTES (training budget, 8), BATCH, PYTHON (python3), OUT (the
# folder whose files come back; default build/device-NAME).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-8}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
[ -f devdata/crops/meta.json ] || { echo "devdata/crops is missing: carry it (see scripts/device_common.sh)"; exit 2; }
for f in "$@"; do [ -f "weights/$f" ] || { echo "weights/$f is missing"; exit 2; }; done
# the package imports its C extensions (range coder, kernels): build them for this Python
$PY setup.py -q build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -5 "$OUT/build.log"; exit 3; }
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
WORK=$(mktemp -d)

# keep_copying DIR FILE...: copy the run's small files into $OUT every 30 s (a job stopped at
# its time limit still returns its last checkpoint); `stop_copying` ends it with a last copy
keep_copying() {
  local dir=$1; shift
  COPY_ARGS=("$dir" "$@")
  ( while sleep 30; do for f in "$@"; do cp "$dir/$f" "$OUT/" 2>/dev/null || true; done; done ) &
  COPIER=$!
}
stop_copying() {
  kill "$COPIER" 2>/dev/null || true
  local dir=${COPY_ARGS[0]}
  for f in "${COPY_ARGS[@]:1}"; do cp "$dir/$f" "$OUT/" 2>/dev/null || true; done
}
