#!/bin/bash
# GPU job: fine-tune elic's pruned synthesis (hidden widths WIDTHS, 96,48,48) on the crop pack
# for MINUTES (8) at batch BATCH (32) of 192-px windows, distortion only (compress/prune.py).
# Reads weights/elic.safetensors only; preparation and options: scripts/device_common.sh.
# Returns under $OUT: synthesis.pt (pruned g_s + optimiser, about 12 MB) and prune.log. Then
# here, to write integer weights from it (no further training):
#   python -m neuralcodec.compress.prune --source weights/elic.safetensors --widths 96,48,48 \
#       --out RETURNED_DIR --resume --steps 0 --final build/elic-int-pruned.safetensors
OUT=${OUT:-build/device-prune}
source "$(dirname "$0")/device_common.sh" elic.safetensors
keep_copying "$WORK/run" synthesis.pt
$PY -m neuralcodec.compress.prune --source weights/elic.safetensors --widths "${WIDTHS:-96,48,48}" \
    --pack devdata/crops --device "$DEVICE" --minutes "$MINUTES" --steps 1000000 \
    --batch "${BATCH:-32}" --crop 192 --lr 1e-4 --save-every 250 --out "$WORK/run" \
    2>&1 | tee "$OUT/prune.log"
stop_copying
