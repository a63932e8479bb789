"""Where a splat-vq level's bytes go and how the rendered fidelity responds to each attribute.

    python scripts/splat_breakdown.py SCENE.ply --levels 3 4 [--views 4 --size 256]

For each level: the size of every coded stream (and the container total), then the covered-pixel
PSNR (against the input's own renders) of the pruned scene with exactly one attribute replaced by
its decoded value (all others at full precision), so each stream's bytes can be set beside the
distortion it adds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def canonical(s):
    """The same Gaussians with each splat's axes sorted by scale (as the codec stores them), so
    that decoded scales or rotations can replace the reference's one attribute at a time."""
    from neuralcodec.codecs.splat_coding import matrix_quaternions, quaternion_matrices
    from neuralcodec.datasets.splat import GaussianScene

    perm = np.argsort(s.scales_log, axis=1, kind="stable")
    m = np.take_along_axis(quaternion_matrices(s.rotations), perm[:, None, :], axis=2)
    m[np.linalg.det(m) < 0, :, 0] *= -1.0  # a proper rotation (an axis' sign is free)
    scales = np.take_along_axis(s.scales_log, perm, axis=1)
    rot = matrix_quaternions(m).astype(np.float32)
    return GaussianScene(s.positions, scales, rot, s.opacities, s.sh_dc, s.sh_rest, s.sh_degree)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene")
    p.add_argument("--levels", type=int, nargs="+", default=[3, 4])
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", help="importance scores (.npy) to reuse")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from neuralcodec import api
    from neuralcodec.bench.splat import Views
    from neuralcodec.codecs import splat_vq as sv
    from neuralcodec.codecs.base import get_codec
    from neuralcodec.container.binary import unpack as read_container
    from neuralcodec.datasets.splat import GaussianScene, read_splat

    scene = read_splat(a.scene)
    n0 = len(scene)
    ref_bytes = len(get_codec("compressed-ply").compress(scene, 1))
    views = Views(scene, a.views, a.size)
    t = time.perf_counter()
    score = np.load(a.cache) if a.cache else sv.importance(scene)
    print(
        f"{a.scene}: {n0} splats, compressed.ply {ref_bytes} B, importance {time.perf_counter() - t:.1f} s"
    )
    for q in a.levels:
        data, _ = api.encode_with_report(scene, "splat-vq", q, modality="splat")
        enc = read_container(data)
        dec, _ = api.decode_bytes(data)
        print(f"level {q}: {len(data)} B = {len(data) / ref_bytes:.3f}x, {len(dec)} splats kept")
        other = len(data)
        for name, b in enc.streams.items():
            print(f"  {name:6s} {len(b):8d} B  {8 * len(b) / len(dec):6.2f} bit/kept splat")
            other -= len(b)
        print(f"  container/headers {other} B")
        m, _ = views.score(dec)
        print(f"  all attributes decoded: covered PSNR {m['psnr_covered']:.2f}")
        ref = canonical(sv.lossy_reference(scene, sv.LEVELS[q], score))
        m, _ = views.score(ref)
        print(f"  pruned only:            covered PSNR {m['psnr_covered']:.2f}")
        fields = {
            "positions": "positions",
            "opacity": "opacities",
            "colour": "sh_dc",
            "scales": "scales_log",
            "rotations": "rotations",
            "sh_rest": "sh_rest",
        }
        for label, f in fields.items():
            if f == "sh_rest" and dec.sh_degree == 0:
                continue
            kw = {
                k: getattr(ref, k)
                for k in ("positions", "scales_log", "rotations", "opacities", "sh_dc", "sh_rest")
            }
            kw[f] = getattr(dec, f)
            if f == "sh_rest" or ref.sh_rest.shape != dec.sh_rest.shape:
                kw["sh_rest"] = dec.sh_rest
            hybrid = GaussianScene(**kw, sh_degree=dec.sh_degree)
            m, _ = views.score(hybrid)
            print(f"  only {label:10s} decoded: covered PSNR {m['psnr_covered']:.2f}")


if __name__ == "__main__":
    main()
