#!/bin/bash
# Train mlic's entropy model on a GPU machine for a time budget (about 8 minutes of training).
#
# Prepare here, once (devdata/ is ignored by git):
#   python scripts/train_mlic.py pack --out devdata/mlic --crop 256 --budget-mib 34
# The repository's tracked files travel with the job and must fit beside the pack (64 MiB in
# all): move the weights this job does not read out of the checkout for the run (it needs
# weights/elic-int.safetensors only), and put them back afterwards with `git checkout -- weights`:
#   mkdir -p ../weights-aside && for f in weights/*.safetensors; do
#     [ "$f" = weights/elic-int.safetensors ] || mv "$f" ../weights-aside/; done
# Run there with devdata/mlic carried, e.g. command `bash scripts/device_train_mlic.sh`,
# carry ["devdata"]. What comes back under $OUT: best.pt (the trained tensors only, fp32,
# about 4.5 MB), summary.json, history.json, run.json, train.log, cache.log.
# Then here:
#   python scripts/train_mlic.py freeze --run RUN_DIR --out weights/mlic.safetensors
#
# Environment: MINUTES (training budget, default 8), BATCH (default 64), PYTHON (python3),
# OUT (default build/device-mlic, for a trial run on this machine with DEVICE=cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-build/device-mlic}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
[ -f devdata/mlic/meta.json ] || { echo "devdata/mlic is missing: carry it (see the header)"; exit 2; }
[ -f weights/elic-int.safetensors ] || { echo "weights/elic-int.safetensors is missing"; exit 2; }
# the C extensions (range coder, kernels) are imported by the package: build them for this Python
$PY setup.py -q build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -5 "$OUT/build.log"; exit 3; }
$PY -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
work=$(mktemp -d)
$PY scripts/train_mlic.py cache --pack devdata/mlic --out "$work/cache" --device "$DEVICE" \
    --augment 8 2>&1 | tee "$OUT/cache.log"
# keep the run's small files in $OUT as it goes, so a run stopped at its limit still returns them
( while sleep 30; do cp "$work"/run/{best.pt,summary.json,history.json,run.json,train.log} \
    "$OUT"/ 2>/dev/null || true; done ) &
copier=$!
$PY scripts/train_mlic.py train --cache "$work/cache" --out "$work/run" --device "$DEVICE" \
    --minutes "${MINUTES:-8}" --steps 1000000 --batch "${BATCH:-64}" --base elic-int \
    --trainable-only --lr 1e-5 --new-lr-scale 100 --warmup 100 --val-every 500 --val-count 48
kill $copier 2>/dev/null || true
cp "$work"/run/{best.pt,summary.json,history.json,run.json,train.log} "$OUT"/
tail -3 "$OUT/train.log"
