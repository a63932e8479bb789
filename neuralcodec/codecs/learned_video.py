"""``elic-ip``: the learned video codec, intra frames by ``elic-int``, inter (P) frames by motion
compensation from the previous decoded frame plus a learned residual coder.

::

    VideoSource (8-bit 4:2:0, streamed) --GOP of ``gop`` frames-->
      I frame: Y'CbCr --integer BT.601 (chroma repeated 2x2)--> RGB --elic-int--> streams z, y
               decoded RGB --integer BT.601, chroma averaged 2x2--> reference planes
      P frame: vectors = estimate(current Y, reference Y)                (encoder only)
               one range-coded stream: vectors (video_motion), then Y, U, V residual
               coefficients (video_residual); reference = clip(prediction + residual)
    segment "g<k>" of the .ncf = the frames of GOP k, each as varint length + payload
               (an I frame's payload: varint length of z, z, y)

Every reference frame is integer arithmetic end to end (elic-int's exact synthesis, integer
colour conversion, integer interpolation, integer inverse transform), so the decoder rebuilds the
encoder's references exactly on every machine, instruction set and thread count. Decoding is a
generator: one GOP segment is read at a time and one frame is held besides the reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from neuralcodec.entropy import rangecoder

from .base import Codec, CodecError, Encoded, get_codec, register
from .latent.sinks import DecoderSinks, EncoderSinks
from .video_motion import (
    BLOCK,
    AdaptiveMvdModel,
    VectorModels,
    code_vectors,
    code_vectors_joint,
    estimate,
    predict_frame,
)
from .video_residual import STEP_GRID, TB, ResidualModel, load
from .weights import weights_dir

MAX_GOP = 1 << 16
VIDEO_EXTENSIONS = (".y4m", ".yuv", ".mp4", ".mkv", ".mov", ".webm", ".avi", ".264", ".h264")
LAMBDA_PER_STEP = 0.4  # motion search: SAD + lambda * vector bits, lambda = this x step (pels)
RD_LAMBDA = 0.13  # residual levels: squared error + this x step**2 x bits (0: plain rounding)
RD_MOTION = True  # sub-pel vectors chosen in coding order at the adaptive models' code lengths
STEP_SCALE = 1.0  # the P frames' step: this x the residual model's step of the quality
TOOL_OBMC = 1  # header "tools" bits: overlapped block motion compensation
TOOL_MV_CARRY = 2  # vector statistics carried from P frame to P frame within a GOP
TOOL_MV_JOINT = 4  # still flag per block, then the moving blocks' components (VectorModels)
TOOLS = TOOL_OBMC | TOOL_MV_CARRY | TOOL_MV_JOINT  # the encoder's; files without "tools": none


class GopState:
    """What both sides carry from P frame to P frame of one GOP (``TOOL_MV_CARRY``)."""

    def __init__(self) -> None:
        self.mvd = AdaptiveMvdModel()
        self.joint = VectorModels()


# ----------------------------------------------------------------------------- colour (integer)


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited range Y'CbCr 4:2:0 -> RGB uint8 (chroma repeated 2x2), integers only."""
    h, w = y.shape
    uu = np.repeat(np.repeat(u.astype(np.int32), 2, 0), 2, 1)[:h, :w] - 128
    vv = np.repeat(np.repeat(v.astype(np.int32), 2, 0), 2, 1)[:h, :w] - 128
    c = 298 * (y.astype(np.int32) - 16) + 128
    rgb = np.stack([c + 409 * vv, c - 100 * uu - 208 * vv, c + 516 * uu], axis=-1) >> 8
    return np.clip(rgb, 0, 255).astype(np.uint8)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 -> BT.601 limited range Y'CbCr 4:2:0 (chroma averaged over 2x2), integers."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128

    def down(c: np.ndarray) -> np.ndarray:
        return (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2] + 2) >> 2

    clip = lambda a: np.clip(a, 0, 255).astype(np.uint8)  # noqa: E731
    return clip(y), clip(down(u)), clip(down(v))


# ----------------------------------------------------------------------------- framing


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(buf) or shift > 35:
            raise CodecError("elic-ip: truncated or corrupt frame lengths")
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, pos


def _take(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _read_varint(buf, pos)
    if pos + n > len(buf):
        raise CodecError("elic-ip: truncated frame payload")
    return buf[pos : pos + n], pos + n


# ----------------------------------------------------------------------------- the codec


@lru_cache(maxsize=4)
def _load_residual(path: str, mtime: float) -> tuple[ResidualModel, str]:
    p = Path(path)
    return load(p), hashlib.sha256(p.read_bytes()).hexdigest()


def _pad8(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return np.pad(a, ((0, -h % TB), (0, -w % TB)), mode="edge")


@register
class ElicIpCodec(Codec):
    """Learned video codec: elic-int intra frames, motion-compensated learned residual P frames."""

    name = "elic-ip"
    codec_id = 50
    modality = "video"
    rank = 0
    quality_range = (1, 8)
    extensions = VIDEO_EXTENSIONS
    description = "elic-int intra + block motion and a learned residual transform, exact references"
    residual_file: ClassVar[str] = "elic-ip.safetensors"

    def __init__(self, gop: int = 32, weights: Path | None = None):
        if (
            isinstance(gop, bool)
            or not isinstance(gop, (int, np.integer))
            or not 1 <= gop <= MAX_GOP
        ):
            raise CodecError(
                f"elic-ip: gop (intra period) must be an integer in 1..{MAX_GOP}, got {gop!r}"
            )
        self.gop = int(gop)
        self.intra = get_codec("elic-int")
        self.residual_path = Path(weights) if weights else weights_dir() / self.residual_file

    # -- weights --------------------------------------------------------------------------
    def weights_available(self) -> bool:
        return self.intra.weights_available() and self.residual_path.is_file()

    def residual(self) -> tuple[ResidualModel, str]:
        if not self.residual_path.is_file():
            raise CodecError(f"elic-ip: no residual weights at {self.residual_path}")
        p = self.residual_path
        return _load_residual(str(p), p.stat().st_mtime)

    def weights_sha256(self, model_id: str | None = None) -> str:
        """One digest of both weight files (elic-int's and the residual model's)."""
        both = f"{self.intra.weights_sha256()}:{self.residual()[1]}"
        return hashlib.sha256(both.encode()).hexdigest()

    def model_id(self) -> str:
        return "elic-ip-" + str(self.residual()[0].meta.get("model_id", "r1"))

    # -- quality --------------------------------------------------------------------------
    def _steps(self, quality: int) -> tuple[int, int]:
        """(elic-int quality of the I frames, index of the P frames' quantiser step)."""
        q = self.check_quality(quality)
        return q, q - self.quality_range[0]

    # -- frames ---------------------------------------------------------------------------
    def _intra_encode(self, frame, quality: int) -> tuple[bytes, tuple[np.ndarray, ...]]:
        rgb = yuv420_to_rgb(*frame)
        enc, rec = self.intra.encode_with_reconstruction(rgb, quality)
        if list(enc.streams) != ["z", "y"]:
            raise CodecError(f"elic-ip: unexpected elic-int streams {list(enc.streams)}")
        z, y = enc.streams["z"], enc.streams["y"]
        return _varint(len(z)) + z + y, rgb_to_yuv420(rec)

    def _intra_decode(self, payload: bytes, h: int, w: int, quality: int):
        z, pos = _take(payload, 0)
        header = {"quality": quality, "shape": (h, w, 3), "weights_sha256": None}
        enc = Encoded("elic-int", header, {"z": z, "y": payload[pos:]})
        return rgb_to_yuv420(self.intra.decode(enc))

    def _inter_encode(
        self, ref, frame, si: int, state=None
    ) -> tuple[bytes, tuple[np.ndarray, ...]]:
        """Code one P frame with quantiser step ``STEP_GRID[si]``: (payload, reconstruction).
        The payload starts with the step's index, so an encoder may pick it per frame."""
        model = self.residual()[0]
        step = STEP_GRID[si]
        models = None
        if RD_MOTION:
            models = state.joint if state is not None else VectorModels()
        mv = estimate(frame[0], ref[0], LAMBDA_PER_STEP * step / 16, models=models)
        pred = predict_frame(ref, mv, obmc=bool(TOOLS & TOOL_OBMC))
        kinds = ("luma", "chroma", "chroma")
        if RD_LAMBDA > 0:
            qs = [
                model.quantise_rd(_pad8(f.astype(np.int32) - p), k, step, RD_LAMBDA)
                for f, p, k in zip(frame, pred, kinds, strict=True)
            ]
        else:
            qs = [
                model.quantise(_pad8(f.astype(np.int32) - p), k, step)
                for f, p, k in zip(frame, pred, kinds, strict=True)
            ]
        sinks = EncoderSinks()
        recon = self._inter(sinks["p"], ref, si, TOOLS, mv, qs, state)
        return bytes([si]) + sinks.finish()["p"], recon

    def _inter(self, sink, ref, si: int, tools: int, mv=None, qs=None, state=None):
        """Code (``mv``, ``qs`` given) or decode (None) one P frame's stream through ``sink``,
        with the coding ``tools`` of the file; ``state``: the GOP's vector statistics
        (``GopState``: used with ``TOOL_MV_CARRY``; None makes a fresh one)."""
        model = self.residual()[0]
        state = GopState() if state is None else state
        h, w = ref[0].shape
        shape = (-(-h // BLOCK), -(-w // BLOCK))
        if tools & TOOL_MV_JOINT:
            models = state.joint if tools & TOOL_MV_CARRY else VectorModels()
            mv = code_vectors_joint(sink, shape, mv, models)
        else:
            mv = code_vectors(sink, shape, mv, state.mvd if tools & TOOL_MV_CARRY else None)
        pred = predict_frame(ref, mv, obmc=bool(tools & TOOL_OBMC))
        step = STEP_GRID[si]
        out = []
        for i, p in enumerate(pred):
            kind = "luma" if i == 0 else "chroma"
            ph, pw = p.shape
            q = None if qs is None else qs[i]
            q = model.code_plane(sink, kind, (-(-ph // TB), -(-pw // TB)), q)
            res = model.dequantise(q, kind, step)[:ph, :pw]
            out.append(np.clip(p + res, 0, 255).astype(np.uint8))
        return tuple(out)

    def _p_decode(self, payload: bytes, ref, tools: int = TOOLS, state=None):
        if not payload or payload[0] >= len(STEP_GRID):
            raise CodecError("elic-ip: bad quantiser step in a P frame")
        sink = DecoderSinks({"p": payload[1:]})["p"]
        return self._inter(sink, ref, payload[0], tools, state=state)

    # -- Codec ----------------------------------------------------------------------------
    def _check_source(self, source: Any):
        from neuralcodec.datasets.video import VideoSource

        if not isinstance(source, VideoSource):
            raise CodecError(f"elic-ip codes a VideoSource, got {type(source).__name__}")
        info = source.info
        if info.chroma != "420" or info.bit_depth != 8:
            raise CodecError(
                f"elic-ip codes 8-bit 4:2:0 video; this one is {info.chroma} {info.bit_depth}-bit"
            )
        return info

    def encode(self, data: Any, quality: int) -> Encoded:
        return self.encode_frames(data, quality)[0]

    def encode_with_reconstruction(self, data: Any, quality: int):
        """``(Encoded, the decoded frames as a list)``: holds every frame, for short clips."""
        frames: list = []
        encoded, _ = self.encode_frames(data, quality, keep=lambda i, o, d: frames.append(d))
        return encoded, frames

    def encode_frames(self, data: Any, quality: int, keep=None) -> tuple[Encoded, list[int]]:
        """Encode a ``VideoSource``; returns the ``Encoded`` and each frame's payload bytes.
        ``keep(index, original, decoded)`` (optional) sees every frame as the decoder will."""
        info = self._check_source(data)
        iq, qi = self._steps(quality)
        steps = np.array(STEP_GRID)
        si = int(
            np.abs(steps - STEP_SCALE * int(self.residual()[0].steps[qi])).argmin()
        )  # the quality's step
        streams: dict[str, bytes] = {}
        sizes: list[int] = []
        parts: list[bytes] = []
        ref = None
        for i, frame in enumerate(data):
            if i % self.gop == 0:
                if parts:
                    streams[f"g{i // self.gop - 1}"] = b"".join(parts)
                    parts = []
                payload, ref = self._intra_encode(frame, iq)
                state = GopState()
            else:
                payload, ref = self._inter_encode(ref, frame, si, state)
            parts.append(_varint(len(payload)) + payload)
            sizes.append(len(payload))
            if keep is not None:
                keep(i, frame, ref)
        if parts:
            streams[f"g{(len(sizes) - 1) // self.gop}"] = b"".join(parts)
        header = {
            "model_id": self.model_id(),
            "weights_sha256": self.weights_sha256(),
            "quality": iq,
            "gop": self.gop,
            "shape": (len(sizes), info.height, info.width, 3),
            "colorspace": "yuv420",
            "bit_depth": 8,
            "tools": TOOLS,
        }
        return Encoded(self.name, header, streams), sizes

    def decode(self, encoded: Encoded) -> Iterator[tuple[np.ndarray, ...]]:
        hdr = encoded.header
        shape = tuple(int(v) for v in hdr["shape"])
        if len(shape) != 4 or shape[3] != 3 or shape[0] < 1:
            raise CodecError(f"elic-ip: bad video shape {hdr['shape']!r}")
        if hdr.get("colorspace", "yuv420") != "yuv420" or int(hdr.get("bit_depth", 8)) != 8:
            raise CodecError("elic-ip: the file does not describe 8-bit 4:2:0 video")
        gop = hdr.get("gop")
        if isinstance(gop, bool) or not isinstance(gop, int) or not 1 <= gop <= MAX_GOP:
            raise CodecError(f"elic-ip: bad intra period {gop!r} in the header")
        tools = hdr.get("tools", 0)
        if isinstance(tools, bool) or not isinstance(tools, int) or tools & ~TOOLS:
            raise CodecError(f"elic-ip: unknown coding tools {tools!r} in the header")
        iq, qi = self._steps(int(hdr["quality"]))
        frames, h, w = shape[:3]
        ngops = -(-frames // gop)
        missing = [f"g{k}" for k in range(ngops) if f"g{k}" not in encoded.streams]
        if missing or len(encoded.streams) != ngops:
            raise CodecError(f"elic-ip: the file's GOP segments are incomplete ({frames} frames)")
        self.residual()  # refuse before the first frame when the weights are absent
        return self._frames(encoded.streams, frames, gop, h, w, iq, tools)

    @staticmethod
    def frame_sizes(data: bytes) -> list[int]:
        """Payload bytes of every frame of an ``elic-ip`` .ncf file, in display order."""
        from neuralcodec.container import unpack

        streams = unpack(data).streams
        sizes = []
        for k in range(len(streams)):
            buf, pos = streams.get(f"g{k}", b""), 0
            while pos < len(buf):
                n, pos = _read_varint(buf, pos)
                sizes.append(n)
                pos += n
        return sizes

    def _frames(self, streams, frames, gop, h, w, iq, tools):
        ref = None
        for k in range(-(-frames // gop)):
            buf, pos = streams[f"g{k}"], 0
            for i in range(k * gop, min(frames, (k + 1) * gop)):
                payload, pos = _take(buf, pos)
                try:
                    if i % gop == 0:
                        ref = self._intra_decode(payload, h, w, iq)
                        state = GopState()
                    else:
                        ref = self._p_decode(payload, ref, tools, state)
                except (rangecoder.DecodeError, ValueError) as exc:
                    raise CodecError(f"elic-ip: corrupt frame {i}: {exc}") from None
                yield ref
            if pos != len(buf):
                raise CodecError(f"elic-ip: GOP {k} has {len(buf) - pos} bytes after its frames")
