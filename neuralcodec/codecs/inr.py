"""``inr``: an overfitted, low-complexity image codec of the Cool-chic / C3 family.

::

    encode:  RGB uint8 -> fit InrModel (latents + ARM + upsampler + synthesis) to this image,
             minimising  MSE + lambda[q] * bpp  (soft-round + Kumaraswamy noise, then STE)
             -> quantise each network on a 2^-k grid (k searched on the final loss)
             -> streams  "arm" "ups" "syn" (integer weights, Laplace-coded)
                         "latent"          (integer latents, ARM-conditioned, wavefront order)
             -> decode the streams with the decoder's own path; check latents and pixels
    decode:  header["inr"] -> architecture and step exponents; streams -> integer weights
             -> latents (exact integer ARM, one range-decoder chunk per wavefront)
             -> exact integer upsampler + synthesis -> RGB uint8

No shipped weights: the file carries its own decoder. The decoder is integer arithmetic end to
end, so a file decodes to the same pixels on every machine and thread count.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch

from .. import progress
from ..entropy.rangecoder import DecodeError
from ..entropy.tables import TableError
from ..models import inr_fixed as fx
from ..models.inr import InrConfig, InrModel, mac_per_pixel
from ..models.inr_tables import tables_path
from .base import Codec, CodecError, Encoded, register
from .latent.wavefront import decode_latents, encode_latents

NETWORKS = ("arm", "ups", "syn")
STEP_CANDIDATES = tuple(range(4, 13))
MAX_PIXELS = (
    1 << 22
)  # 4 Mpixel: decoding needs about 1 GB at most; fitting is the bottleneck anyway


@dataclass(frozen=True)
class InrPreset:
    """Encoder effort. ``iterations`` of soft-rounding training, then ``ste_iterations``."""

    iterations: int
    ste_iterations: int
    restarts: int = 1  # candidates trained for ``warmup`` iterations; the best one goes on
    warmup: int = 0
    lr: float = 1e-2
    latent_lr_scale: float = 10.0  # latents move by about lr * scale per Adam step at quality 4
    latent_lr_slope: float = 0.23  # ... times (lambda_4 / lambda) ** slope at other qualities
    ste_lr: float = 1e-4
    temperature: tuple[float, float] = (0.3, 0.1)
    noise: tuple[float, float] = (2.0, 1.0)  # Kumaraswamy parameter a, start -> end
    arch: InrConfig = field(default_factory=InrConfig)


PRESETS: dict[str, InrPreset] = {
    "test": InrPreset(
        iterations=60,
        ste_iterations=10,
        lr=5e-2,
        arch=InrConfig(levels=4, arm_context=8, arm_hidden=8, syn_hidden=(8,), syn_residual=1),
    ),
    "fast": InrPreset(iterations=300, ste_iterations=30),
    "medium": InrPreset(iterations=1500, ste_iterations=150, restarts=2, warmup=100),
    "slow": InrPreset(
        iterations=6000,
        ste_iterations=500,
        restarts=3,
        warmup=300,
        arch=InrConfig(arm_context=24, arm_hidden=24, syn_hidden=(40,)),
    ),
}
QUALITY_RANGE = (1, 8)
LAMBDA_LOW, LAMBDA_HIGH = 2e-2, 1e-4  # quality 1 (small files) .. quality 8 (high PSNR)


def quality_lambda(quality: int) -> float:
    """Rate-distortion weight of quality ``q``: log-spaced, ``loss = MSE + lambda * bpp``."""
    lo, hi = QUALITY_RANGE
    t = (quality - lo) / (hi - lo)
    return math.exp(math.log(LAMBDA_LOW) + t * (math.log(LAMBDA_HIGH) - math.log(LAMBDA_LOW)))


# ----------------------------------------------------------------------------- fitting


def _loss(model: InrModel, x: torch.Tensor, lam: float, mode: str, temp=0.3, a=1.0):
    x_hat, bits = model(mode, temp, a)
    mse = torch.mean((x_hat - x) ** 2)
    bpp = bits / (x.shape[-1] * x.shape[-2])
    return mse + lam * bpp, mse, bpp


def latent_lr_scale(preset: InrPreset, lam: float) -> float:
    """Latent learning rate / network learning rate at rate-distortion weight ``lam``.

    Higher qualities need larger latent values (finer detail in quantisation steps of 1), and
    Adam moves a parameter by about its learning rate per step, so the latents' rate grows as
    ``lam`` shrinks.
    """
    return preset.latent_lr_scale * (quality_lambda(4) / lam) ** preset.latent_lr_slope


def _run(model, x, lam, preset: InrPreset, start: int, stop: int, counter=None) -> float:
    """Soft-rounding phase from iteration ``start`` to ``stop`` (cosine learning rate)."""
    latents = {id(p) for p in model.latents}
    groups = [
        {"params": list(model.latents), "scale": latent_lr_scale(preset, lam)},
        {"params": [p for p in model.parameters() if id(p) not in latents], "scale": 1.0},
    ]
    opt = torch.optim.Adam(groups, lr=preset.lr)
    loss = torch.tensor(math.inf)
    for it in range(start, stop):
        t = it / max(preset.iterations - 1, 1)
        for g in opt.param_groups:
            g["lr"] = g["scale"] * preset.lr * 0.5 * (1 + math.cos(math.pi * t))
        temp = preset.temperature[0] + t * (preset.temperature[1] - preset.temperature[0])
        a = preset.noise[0] + t * (preset.noise[1] - preset.noise[0])
        loss = _loss(model, x, lam, "soft", temp, a)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if counter is not None:
            counter.step()
    return float(loss.detach())


def fit(x: torch.Tensor, lam: float, preset: InrPreset, seed: int = 0) -> InrModel:
    """Overfit an ``InrModel`` to ``x`` (1, 3, H, W) in [0, 1]."""
    h, w = x.shape[-2:]
    restarts = max(preset.restarts, 1)
    warm = min(preset.warmup, preset.iterations) if restarts > 1 else 0
    total = restarts * warm + preset.iterations - warm + preset.ste_iterations
    counter = progress.Counter("fit", total)
    candidates = []
    for r in range(restarts):
        torch.manual_seed(seed + r)
        model = InrModel(preset.arch, h, w)
        candidates.append((_run(model, x, lam, preset, 0, warm, counter), r, model))
    _, _, model = min(candidates, key=lambda c: (c[0], c[1]))
    _run(model, x, lam, preset, warm, preset.iterations, counter)
    return _refine_rounded(model, x, lam, preset, counter)


def _refine_rounded(
    model: InrModel, x: torch.Tensor, lam: float, preset: InrPreset, counter=None
) -> InrModel:
    """Straight-through phase; returns the model at its lowest loss with rounded latents.

    The straight-through gradient is biased and the loss it descends can rise again, so every
    iterate's true (rounded) loss, which the forward pass computes anyway, is compared and the
    best parameters are kept.
    """
    opt = torch.optim.Adam(model.parameters(), lr=preset.ste_lr)
    best_loss, best_state = math.inf, None
    for it in range(preset.ste_iterations + 1):
        last = it == preset.ste_iterations  # only evaluated: no graph, no step
        with torch.set_grad_enabled(not last):
            loss = _loss(model, x, lam, "ste")[0]
        if float(loss.detach()) < best_loss:
            best_loss = float(loss.detach())
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if last:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if counter is not None:
            counter.step()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model


def _param_bits(ints: dict[str, list[np.ndarray]]) -> float:
    return sum(fx.encode_tensors(v)[1] for v in ints.values())


def search_steps(model: InrModel, x: torch.Tensor, lam: float):
    """Greedy per network: the step 2^-k minimising MSE + lambda * (latent + parameter) bpp."""
    pixels = x.shape[-1] * x.shape[-2]
    floats = {n: [t.detach().clone() for t in fx.float_tensors(model, n)] for n in NETWORKS}
    steps, ints = {}, {}
    for name in NETWORKS:
        best = None
        for k in STEP_CANDIDATES:
            q = fx.quantize_tensors(floats[name], k)
            if max(float(np.abs(a).max(initial=0)) for a in q) >= 2**fx.WEIGHT_MAGNITUDE_BITS:
                continue
            fx.load_into(model, {name: q}, {name: k})
            with torch.no_grad():
                _, mse, bpp = _loss(model, x, lam, "hard")
            cost = float(mse) + lam * (float(bpp) + fx.encode_tensors(q)[1] / pixels)
            if best is None or cost < best[0]:
                best = (cost, k, q)
        if best is None:
            raise CodecError(f"inr: network {name} cannot be quantised exactly")
        steps[name], ints[name] = best[1], best[2]
        fx.load_into(model, {name: best[2]}, {name: best[1]})
    return ints, steps


# ----------------------------------------------------------------------------- streams


def _rgb_tensor(data: Any) -> torch.Tensor:
    arr = np.asarray(data)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise CodecError(f"inr takes HxWx3 uint8 RGB arrays, got {arr.dtype} {arr.shape}")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS or min(arr.shape[:2]) < 1:
        raise CodecError(f"inr: image size {arr.shape[1]}x{arr.shape[0]} not supported")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255.0


def _to_uint8(rgb: torch.Tensor) -> np.ndarray:
    return torch.floor(rgb * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _architecture(header: dict[str, Any]) -> tuple[InrConfig, dict[str, int], int, int]:
    try:
        arch = dict(header["inr"])
        stored = arch.pop("steps")
        steps = {n: int(stored[n]) for n in NETWORKS}
        cfg = InrConfig.from_dict(arch)
        h, w = int(header["shape"][0]), int(header["shape"][1])
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"inr: bad or missing architecture in header ({exc})") from None
    if not (0 < h * w <= MAX_PIXELS):
        raise CodecError(f"inr: image size {w}x{h} not supported")
    return cfg, steps, h, w


def decode_streams(header: dict[str, Any], streams: dict[str, bytes]):
    """Header + streams -> (integer latent grids, RGB uint8). The decoder's only path."""
    cfg, steps, h, w = _architecture(header)
    missing = [n for n in (*NETWORKS, "latent") if n not in streams]
    if missing:
        raise CodecError(f"inr: missing streams {', '.join(missing)}")
    try:
        ints = {n: fx.decode_tensors(streams[n], fx.network_shapes(cfg, n)) for n in NETWORKS}
        nets = fx.assemble(cfg, ints, steps)
        grids = decode_latents(nets, fx.make_layout(cfg, h, w), streams["latent"])
    except (DecodeError, TableError, fx.InrStreamError) as exc:
        raise CodecError(f"inr: corrupt stream ({exc})") from None
    return grids, _to_uint8(fx.synthesize_fixed(nets, grids))


@register
class InrCodec(Codec):
    """Per-image overfitted codec; ``preset`` trades encode time for rate-distortion."""

    name = "inr"
    codec_id = 10
    rank = 10  # slow: never the default while a learned transform codec has weights
    slow_reason = "fits a small network to each image: minutes per image on a CPU"
    modality = "image"
    writes_ncf = True
    quality_range: ClassVar[tuple[int, int]] = QUALITY_RANGE
    extensions = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
    description = "overfitted latent grids + ARM + tiny synthesis (Cool-chic style), bit-exact"

    def __init__(self, preset: str = "medium", seed: int = 0):
        if preset not in PRESETS:
            raise CodecError(f"inr: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        self.preset = preset
        self.seed = int(seed)
        self.last_stats: dict[str, Any] = {}

    def weights_available(self) -> bool:
        """The per-image networks travel in the file; only the frozen coding tables ship."""
        return tables_path().is_file()

    def encode(self, data: Any, quality: int) -> Encoded:
        q = self.check_quality(quality)
        x = _rgb_tensor(data)
        h, w = x.shape[-2:]
        lam, preset, t0 = quality_lambda(q), PRESETS[self.preset], time.perf_counter()
        with torch.enable_grad():
            model = fit(x, lam, preset, self.seed)
        ints, steps = search_steps(model, x, lam)
        nets = fx.assemble(preset.arch, ints, steps)
        grids = [torch.round(y.detach()).to(torch.int64)[0, 0].numpy() for y in model.latents]
        streams, est_bits = {}, {}
        for n in NETWORKS:
            streams[n], est_bits[n] = fx.encode_tensors(ints[n])
        layout = fx.make_layout(preset.arch, h, w)
        streams["latent"], est_bits["latent"] = encode_latents(nets, layout, grids)
        arch = {**preset.arch.to_dict(), "steps": steps}
        header = {
            "shape": [h, w, 3],
            "quality": q,
            "weights_sha256": "",
            "preset": self.preset,
            "inr": arch,
        }
        encoded = Encoded(codec=self.name, header=header, streams=streams)
        self._verify(encoded, grids, est_bits, time.perf_counter() - t0)
        return encoded

    def _verify(self, encoded: Encoded, grids, est_bits, encode_s: float) -> None:
        """Decode what was written; the latents must match exactly. Records the real numbers."""
        t0 = time.perf_counter()
        decoded, pixels = decode_streams(encoded.header, encoded.streams)
        if any(not np.array_equal(a, b) for a, b in zip(decoded, grids, strict=True)):
            raise CodecError("inr: decoded latents differ from the encoded ones")
        h, w = pixels.shape[:2]
        self.last_stats = {
            "encode_s": encode_s,
            "decode_s": time.perf_counter() - t0,
            "estimated_bits": est_bits,
            "stream_bytes": {k: len(v) for k, v in encoded.streams.items()},
            "bpp_payload": 8 * encoded.payload_bytes / (h * w),
            "mac_per_pixel": mac_per_pixel(PRESETS[self.preset].arch, h, w)["total"],
            "pixels": pixels,
        }

    def decode(self, encoded: Encoded) -> np.ndarray:
        return decode_streams(encoded.header, encoded.streams)[1]

    def settings_fingerprint(self) -> str:
        """sha256 of the preset's definition (iterations, schedule, architecture)."""
        text = json.dumps(asdict(PRESETS[self.preset]), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["preset"] = self.preset
        d["presets"] = list(PRESETS)
        return d


def preset_with(name: str, **changes: Any) -> InrPreset:
    """A copy of preset ``name`` with some fields changed (experiments, benchmarks)."""
    return replace(PRESETS[name], **changes)
