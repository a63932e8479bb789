#!/bin/bash
# GPU job: train mlic's entropy model (aggregations + global contexts) for MINUTES (8) at
# batch BATCH (64) from elic-int's networks, on the crop pack's latents in 8 flips / rotations.
# Reads weights/elic-int.safetensors only; preparation and options: scripts/device_common.sh.
# Returns under $OUT: best.pt (trained tensors only, about 4.5 MB), summary.json, history.json,
# run.json, train.log, cache.log. Then here:
#   python scripts/train_mlic.py freeze --run RETURNED_DIR --out weights/mlic.safetensors
OUT=${OUT:-build/device-mlic}
source "$(dirname "$0")/device_common.sh" elic-int.safetensors
$PY scripts/train_mlic.py cache --pack devdata/crops --out "$WORK/cache" --device "$DEVICE" \
    --augment 8 2>&1 | tee "$OUT/cache.log"
keep_copying "$WORK/run" best.pt summary.json history.json run.json train.log
$PY scripts/train_mlic.py train --cache "$WORK/cache" --out "$WORK/run" --device "$DEVICE" \
    --minutes "$MINUTES" --steps 1000000 --batch "${BATCH:-64}" --base elic-int \
    --trainable-only --lr 1e-5 --new-lr-scale 100 --warmup 100 --val-every 500 --val-count 48
stop_copying
tail -3 "$OUT/train.log"
