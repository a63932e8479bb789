"""Residual bytes of ``elic-ip``'s inter frames under the frozen tables and under the adaptive
contexts (tools bit 64) for the *same* levels (bytes of the range-coded streams): the clip is encoded with tools 23 (frozen tables,
levels chosen at their code lengths), then every inter frame's levels are coded both ways, the
adaptive states carried over the GOP as the codec carries them.

python scripts/video_residual_bits.py CLIP [--frames 16] [--quality 4]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from neuralcodec.codecs import learned_video as lv
from neuralcodec.codecs import video_residual as vr
from neuralcodec.codecs.base import get_codec
from neuralcodec.codecs.latent.sinks import EncoderSinks
from neuralcodec.datasets.video import read_video


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("clip")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--quality", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(1)
    lv.TOOLS = 23
    codec = get_codec("elic-ip", gop=args.frames)
    model = codec.residual()[0]
    frames: list = []
    predictions: list = []
    inner, inner_predict = lv.ElicIpCodec._inter, lv.predict_frame

    def predict(*a, **k):
        out = inner_predict(*a, **k)
        predictions[:] = [out]
        return out

    def spy(self, sink, refs, si, tools, mv=None, qs=None, *a, **k):
        out = inner(self, sink, refs, si, tools, mv, qs, *a, **k)
        if qs is not None:
            frames.append((si, [q.copy() for q in qs], predictions[0]))
        return out

    lv.ElicIpCodec._inter, lv.predict_frame = spy, predict
    codec.encode_frames(read_video(args.clip, max_frames=args.frames), args.quality)
    states = vr.residual_states()
    frozen = adaptive = 0.0
    for si, qs, pred in frames:
        sinks, other = EncoderSinks(), EncoderSinks()
        for i, q in enumerate(qs):
            kind = "luma" if i == 0 else "chroma"
            model.code_plane(sinks["p"], kind, q.shape[:2], q)
            p8 = lv._pad8(pred[i].astype(np.int32))
            hints = vr.prediction_hints(p8, vr.STEP_GRID[si])
            base = vr.residual_base(kind, si)
            vr.code_plane_adaptive(other["p"], q.shape[:2], q, hints, states, base)
        frozen += len(sinks.finish()["p"])
        adaptive += len(other.finish()["p"])
    print(
        f"{len(frames)} inter frames: frozen tables {frozen:.0f} B, adaptive contexts "
        f"{adaptive:.0f} B ({100 * (adaptive / frozen - 1):+.1f}%)"
    )


if __name__ == "__main__":
    main()
