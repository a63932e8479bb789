#!/bin/bash
# GPU job: train the wavelet model (scripts/train_wavelet.py) from its KLT start for MINUTES (8)
# at batch BATCH (64) of 192-px windows of the crop pack; WIDTH / DEPTH (128 / 3) size the
# residual decoder. Reads no weights file (move every weights/*.safetensors aside for the run);
# preparation and options: scripts/device_common.sh.
# Returns under $OUT: best.safetensors (chosen on the pack's validation crops), last.safetensors
# + last.opt (to resume here with --resume), state.json, train.log. Then here:
#   python -m neuralcodec.compress.wavelet --checkpoint RETURNED_DIR/best.safetensors --out FILE
# (a new weights file for `wavelet` changes its sha256: files written with the old one must keep
# decoding, so ship it under a new codec name or beside the old file; see docs/wavelet.md).
OUT=${OUT:-build/device-wavelet}
source "$(dirname "$0")/device_common.sh"
keep_copying "$WORK/run" best.safetensors last.safetensors last.opt state.json train.log
$PY scripts/train_wavelet.py --out "$WORK/run" --device "$DEVICE" --pack devdata/crops \
    --minutes "$MINUTES" --steps 1000000 --batch "${BATCH:-64}" --crop 192 --lr 4e-4 \
    --warmup 200 --save-every 1000 --val-every 1000 --width "${WIDTH:-128}" --depth "${DEPTH:-3}"
stop_copying
tail -3 "$OUT/train.log"
