"""``elic-ip``: the learned video codec, intra frames by ``elic-int``, inter (P, optionally B)
frames by motion compensation from decoded frames plus a learned residual coder.

::

    VideoSource (8-bit 4:2:0, streamed) --GOP of ``gop`` frames (tools bit 1024: a GOP also
      starts where ``scene_change`` finds a cut; header "cuts")-->
      I frame: Y'CbCr --integer BT.601 (chroma repeated 2x2)--> RGB --elic-int--> streams z, y
               decoded RGB --integer BT.601, chroma averaged 2x2--> reference planes
               or (tools bit 256, the encoder's choice per I frame by squared error + lambda x
               bits) block intra coding of the planes themselves (video_intra: directional
               prediction from decoded neighbours, the residual coder's transform, deblocking)
      P frame: vectors = estimate(current Y, reference Y)                (encoder only)
               one range-coded stream: vectors (video_motion; tools bit 128: split flags, the
               blocks' vectors, then three more 8x8 vectors per split block), then Y, U, V residual
               coefficients (video_residual, levels chosen by rate and distortion; tools bit
               64: on adaptive binary contexts carried over the GOP, else frozen tables);
               reference = deblock(clip(prediction + residual))   (deblock: tools bit 16)
               then (tools bit 2048) each plane's fitted Wiener filter (video_filter)
      B frame (``bframes`` > 1, tools bit 8): from the decoded frames on either side
               (``coding_order``), one vector field + a mode per block, then the residual
    segment "g<k>" of the .ncf = the frames of GOP k in coding order, each as varint length +
               payload (an I frame's payload: varint length of z, z, y; with tools bit 256
               first a byte, 0 for that, 1 for block intra: then the step index and the stream)

Every reference frame is integer arithmetic end to end (elic-int's exact synthesis, integer
colour conversion, integer interpolation, integer inverse transform and loop filter), so the
decoder rebuilds the encoder's references exactly on every machine, instruction set and thread
count. Decoding is a generator: one GOP segment is read at a time; without B frames one frame is
held besides the reference, with them at most ``bgop`` + 1 decoded frames.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from neuralcodec.entropy import rangecoder

from . import video_filter, video_intra
from .base import Codec, CodecError, Encoded, get_codec, register
from .latent.sinks import DecoderSinks, EncoderSinks
from .video_motion import (
    BLOCK,
    COARSE,
    COARSE_SEARCH,
    MODES,
    AdaptiveMvdModel,
    AdaptiveSymbolModel,
    SplitModels,
    VectorModels,
    blend_modes,
    coarse_plane,
    code_modes,
    code_split_flags,
    code_sub_vectors,
    code_vectors,
    code_vectors_joint,
    estimate,
    estimate_b,
    full_pel_sads,
    predict_frame,
    predict_frame_split,
    scale_vectors,
)
from .video_residual import (
    RES_SET,
    STEP_GRID,
    TB,
    ResidualModel,
    adaptive_plane_bits,
    code_plane_adaptive,
    deblock,
    load,
    prediction_hints,
    quantise_rd_adaptive,
    residual_base,
    residual_states,
)
from .weights import weights_dir

MAX_GOP = 1 << 16
VIDEO_EXTENSIONS = (".y4m", ".yuv", ".mp4", ".mkv", ".mov", ".webm", ".avi", ".264", ".h264")
LAMBDA_PER_STEP = 0.4  # motion search: SAD + lambda * vector bits, lambda = this x step (pels)
RD_LAMBDA = 0.13  # residual levels: squared error + this x step**2 x bits (0: plain rounding)
P_STEP_PATTERN = (2, 1, 2, -1)  # P-only: step index offsets of successive P frames (cycled)
B_ANCHOR_STEP = 0  # with B frames: the anchors' (P frames') step index offset
B_STEP = (2, 3, 4, 4)  # ... and the B frames' at pyramid depth 1, 2, 3, 4+
RD_MOTION = True  # sub-pel vectors chosen in coding order at the adaptive models' code lengths
STEP_SCALE = 1.0  # the P frames' step: this x the residual model's step of the quality
BFRAMES = 0  # default anchor spacing: 0, the encoder's choice per clip (choose_bgop)
AUTO_BGOP = ((4, 3.0), (2, 2.5))  # choose_bgop: (spacing, most error growth over 1 frame)
AUTO_LAMBDA = 4.0  # choose_bgop's motion search: SAD + this x approximate vector bits
MAX_BFRAMES = 16
TOOL_OBMC = 1  # header "tools" bits: overlapped block motion compensation
TOOL_MV_CARRY = 2  # vector statistics carried from P frame to P frame within a GOP
TOOL_MV_JOINT = 4  # still flag per block, then the moving blocks' components (VectorModels)
TOOL_BFRAMES = 8  # hierarchical B frames between anchors "bgop" frames apart (header field)
TOOL_DEBLOCK = 16  # in-loop deblocking of the inter frames' transform block edges
TOOL_CHROMA_STEP = 32  # the inter frames' chroma step: "cstep" grid steps from the luma step
TOOL_RES_ADAPTIVE = 64  # residual coefficients on adaptive binary contexts carried over the GOP
TOOL_SPLIT = 128  # P frames: a split flag per 16x16 block, split ones with four 8x8 vectors
TOOL_INTRA_BLOCK = 256  # I frames: elic-int or block intra coding (video_intra), per frame
TOOL_DCT_INTER = 512  # inter residuals in the integer 8x8 DCT, not the learned KLT (needs 64)
TOOL_CUTS = 1024  # I frames also where a scene starts (header "cuts"): periods restart there
TOOL_WIENER = 2048  # inter frames: a fitted in-loop Wiener filter per plane (video_filter)
WIENER_REFS = True  # encoder: the filter also on frames that others predict from
TOOL_SHARP = 4096  # inter frames: per frame, luma sub-pel samples by 8-tap filters or the 6-tap
SHARP_FLAG = 0x80  # ... the 8-tap ones where set in the first byte of the frame's payload
SHARP = "step"  # encoder: "step" (frames at SHARP_MAX_STEP and finer steps), "always", "never"
SHARP_MAX_STEP = 21  # ... a STEP_GRID index (21: 609; quality 6's anchors and finer)
TOOLS = (
    TOOL_OBMC | TOOL_MV_CARRY | TOOL_MV_JOINT | TOOL_DEBLOCK | TOOL_RES_ADAPTIVE | TOOL_SPLIT
    | TOOL_INTRA_BLOCK | TOOL_DCT_INTER | TOOL_WIENER | TOOL_SHARP
)  # fmt: skip
# the encoder's (B: as well
# TOOL_BFRAMES; TOOL_CHROMA_STEP when CHROMA_STEP is not 0; TOOL_CUTS where it found a scene
# cut); files without "tools": none
KNOWN_TOOLS = TOOLS | TOOL_BFRAMES | TOOL_CHROMA_STEP | TOOL_CUTS
SCENECUT = True  # encoder: an I frame where scene_change(previous, frame) >= CUT_RATIO
CUT_RATIO = 0.65
CUT_GAP = 4  # ... and at least this many frames after the period's first
MAX_CUTS = 1500  # at most this many in a file (listed in the header's metadata, 16 kB at most)
CHROMA_STEP = 0  # the encoder's chroma step offset in STEP_GRID steps (header "cstep"); 0: off
MAX_CSTEP = 16
RES_RD_TRIAL = False  # tools bit 64: the trial pass above for every frame, not just the first
INTRA_OFFSET = 0  # the I frames' elic-int quality: the quality's + this (encoder only)
MV_LAMBDA = 1.0  # P vectors: squared error + this x RD_LAMBDA x step**2 x bits (encoder only)
B_LAMBDA = 1.0  # B sub-pel vectors and modes: the same with this factor (0: SAD + lam x bits)
# TOOL_INTRA_BLOCK (encoder only): an I frame is coded with elic-int and with the block intra
# coder at the quality's step index + each of INTRA_STEPS, and the least squared error +
# INTRA_LAMBDA x RD_LAMBDA x step**2 x bits (the quality's step, in pixels) is kept
INTRA_STEPS = (-8, -6, -4, -2, 0)
INTRA_LAMBDA = 0.25
CHROMA_RD = 0.125  # encoder only: the least factor _plane_weight puts on chroma's lambda
INTRA_ELIC, INTRA_BLOCK = 0, 1  # the first byte of an I frame's payload with TOOL_INTRA_BLOCK
INTRA_CHOICE: int | None = None  # encoder only: None the cheaper, else INTRA_ELIC / INTRA_BLOCK


def _cstep(hdr: dict, tools: int) -> int:
    """The chroma step offset of a file: its "cstep" with ``TOOL_CHROMA_STEP``, else 0."""
    if not tools & TOOL_CHROMA_STEP:
        if "cstep" in hdr:
            raise CodecError("elic-ip: a chroma step offset in a file without one")
        return 0
    c = hdr.get("cstep")
    if isinstance(c, bool) or not isinstance(c, int) or not -MAX_CSTEP <= c <= MAX_CSTEP:
        raise CodecError(f"elic-ip: bad chroma step offset {c!r} in the header")
    return c


def _plane_step(si: int, plane: int, cstep: int) -> int:
    """Index into ``STEP_GRID`` of plane ``plane`` (0 = Y) of an inter frame at step ``si``."""
    return si if plane == 0 else min(max(si + cstep, 0), len(STEP_GRID) - 1)


def _plane_weight(mse: list[float], plane: int) -> float:
    """Factor on the residual lambda of ``plane`` (encoder only; ``CHROMA_RD``): the bench's
    quality, (6 PSNR_Y + PSNR_U + PSNR_V) / 8, moves per squared error of a chroma plane
    (a quarter of the samples, weight 1/8) (2/3) MSE_Y / MSE_C times as fast as per squared
    error of luma, so chroma levels are chosen at lambda x (3/2) MSE_C / MSE_Y, with the
    prediction's errors for the MSEs, within [CHROMA_RD, 1]; 1 for luma or with CHROMA_RD 1.
    Both MSEs get 0.25 (about the error of rounding to integers) so that near-exact planes
    give a finite ratio."""
    if plane == 0 or CHROMA_RD >= 1:
        return 1.0
    ratio = 1.5 * (mse[plane] + 0.25) / (mse[0] + 0.25)
    return float(min(max(ratio, CHROMA_RD), 1.0))


def coding_order(start: int, end: int, bgop: int) -> list[tuple[int, tuple[int, ...], int]]:
    """The frames ``start .. end - 1`` of one intra period in coding order, as (display index,
    reference indices, pyramid depth): the I frame, then per interval of ``bgop`` frames (the
    last one shorter where the period or the clip ends) its last frame as a P frame from the
    interval's first, then its inner frames as B frames by recursive halving (the middle frame
    from both ends, then each half), depth 1 for the first middle."""
    order: list[tuple[int, tuple[int, ...], int]] = [(start, (), 0)]

    def halve(a: int, b: int, depth: int) -> None:
        if b - a < 2:
            return
        m = (a + b) // 2
        order.append((m, (a, b), depth))
        halve(a, m, depth + 1)
        halve(m, b, depth + 1)

    a = start
    while a < end - 1:
        b = min(a + bgop, end - 1)
        order.append((b, (a,), 0))
        halve(a, b, 1)
        a = b
    return order


def choose_bgop(luma: list[np.ndarray]) -> int:
    """The anchor spacing for a clip from the luma of its first frames (encoder only): the
    mean squared error of frame d's motion-compensated prediction from frame 0 (full-pel and
    sub-pel search, no residual) against frame 1's; the first spacing d of ``AUTO_BGOP`` whose
    error is at most its factor x frame 1's (+0.25, for still content) is taken, else 1 (P frames
    only). Fast pans, where prediction over several frames degrades quickly, stay P-only."""

    def error(d: int) -> float:
        mv = estimate(luma[d], luma[0], AUTO_LAMBDA)
        pred = predict_frame((luma[0],), mv)[0]
        return float(np.mean((luma[d].astype(np.float64) - pred) ** 2))

    if len(luma) < 3:
        return 1
    e1 = error(1)
    for d, factor in AUTO_BGOP:
        if len(luma) > d and error(d) <= factor * e1 + 0.25:
            return d
    return 1


def _use_sharp(si: int) -> bool:
    """Encoder: whether an inter frame at step index ``si`` takes the 8-tap luma sub-pel samples
    (``TOOL_SHARP``) in its motion search and prediction, as ``SHARP`` says ("step": at
    ``SHARP_MAX_STEP`` and finer steps)."""
    if not TOOLS & TOOL_SHARP or SHARP == "never":
        return False
    return SHARP == "always" or si <= SHARP_MAX_STEP


def _encoder_tools(bframes: bool, cuts: bool = False) -> int:
    """The ``tools`` the encoder writes: ``TOOLS``, B frames, the chroma offset and scene cuts
    as used."""
    return (
        TOOLS
        | (TOOL_BFRAMES if bframes else 0)
        | (TOOL_CHROMA_STEP if CHROMA_STEP else 0)
        | (TOOL_CUTS if cuts else 0)
    )


def _cuts(hdr: dict, tools: int, frames: int) -> list[int]:
    """The scene cuts of a file: its "cuts" with ``TOOL_CUTS`` (increasing frame indexes in
    1 .. frames - 1, at most ``MAX_CUTS``), else none."""
    if not tools & TOOL_CUTS:
        if "cuts" in hdr:
            raise CodecError("elic-ip: scene cuts in a file without the scene-cut tool")
        return []
    cuts = hdr.get("cuts")
    ok = (
        isinstance(cuts, list)
        and 1 <= len(cuts) <= MAX_CUTS
        and all(isinstance(c, int) and not isinstance(c, bool) for c in cuts)
        and all(a < b for a, b in zip([0, *cuts], cuts, strict=False))
        and cuts[-1] < frames
    )
    if not ok:
        raise CodecError("elic-ip: bad scene cuts in the header")
    return list(cuts)


def gop_starts(frames: int, gop: int, cuts: list[int]) -> list[int]:
    """The first frame of every period: every ``gop`` frames, restarting at each cut."""
    starts, s, pending = [], 0, list(cuts)
    while s < frames:
        starts.append(s)
        while pending and pending[0] <= s:
            pending.pop(0)
        s = min(s + gop, pending[0] if pending else frames, frames)
    return starts


def scene_change(prev: np.ndarray, cur: np.ndarray) -> float:
    """How badly luma ``cur`` is predicted from ``prev`` (encoder only): on both planes averaged
    over ``COARSE`` x ``COARSE`` pixels, the reference's mean and spread matched to the frame's
    (fades and flashes change them), each 16 x 16 block's least SAD within ``COARSE_SEARCH``
    coarse pixels (the wide motion search's), summed, over the blocks' SADs about their own
    means (a cost of coding them without a reference). Within a shot, fast pans and fades
    included, it stays at or below about 0.5 on the development clips; across a cut it is
    0.7 or more."""
    h, w = cur.shape
    pad = ((0, -h % BLOCK), (0, -w % BLOCK))
    cur, prev = np.pad(cur, pad, mode="edge"), np.pad(prev, pad, mode="edge")
    hh, ww = cur.shape
    c, b, r = COARSE, BLOCK // COARSE, COARSE_SEARCH
    small, ref = coarse_plane(cur), coarse_plane(prev).astype(np.float64)
    # brightness first matched (the reference's mean and spread made the frame's), so fades
    # and flashes are not cuts
    y = small.astype(np.float64)
    gain = float(y.std()) / float(ref.std()) if ref.std() > 0 else 1.0
    gain = min(max(gain, 0.25), 4.0)
    ref = np.clip(np.rint(gain * (ref - ref.mean()) + y.mean()), 0, 255).astype(np.int16)
    inter = full_pel_sads(small, np.pad(ref, r, mode="edge"), r, b).min(0)
    cells = small.astype(np.int64).reshape(hh // c // b, b, ww // c // b, b)
    intra = np.abs(cells - cells.mean((1, 3), keepdims=True)).sum()
    return float(inter.astype(np.int64).sum()) / max(float(intra), 1.0)


def _bgop(hdr: dict, tools: int) -> int:
    """The anchor spacing of a file: its "bgop" with ``TOOL_BFRAMES``, else 1 (P frames only)."""
    if not tools & TOOL_BFRAMES:
        if "bgop" in hdr:
            raise CodecError("elic-ip: a B-frame spacing in a file without B frames")
        return 1
    bgop = hdr.get("bgop")
    if isinstance(bgop, bool) or not isinstance(bgop, int) or not 2 <= bgop <= MAX_BFRAMES:
        raise CodecError(f"elic-ip: bad B-frame spacing {bgop!r} in the header")
    return bgop


class GopState:
    """What both sides carry from P frame to P frame of one GOP (``TOOL_MV_CARRY``)."""

    def __init__(self) -> None:
        self.mvd = AdaptiveMvdModel()
        self.joint = VectorModels()
        self.b_joint = VectorModels()  # the B frames' vectors (TOOL_BFRAMES)
        self.b_modes = AdaptiveSymbolModel(MODES + 1, MODES)  # their block modes
        self.resid = residual_states()  # the residual coefficients' contexts (TOOL_RES_ADAPTIVE)
        self.split = SplitModels()  # split flags and the split blocks' vectors (TOOL_SPLIT)
        self.filter = video_filter.FilterState()  # the loop filters' (TOOL_WIENER)


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

    def __init__(
        self,
        gop: int = 32,
        weights: Path | None = None,
        bframes: int = BFRAMES,
        scenecut: bool = True,
    ):
        if (
            isinstance(gop, bool)
            or not isinstance(gop, (int, np.integer))
            or not 1 <= gop <= MAX_GOP
        ):
            raise CodecError(
                f"elic-ip: gop (intra period) must be an integer in 1..{MAX_GOP}, got {gop!r}"
            )
        self.gop = int(gop)
        if (
            isinstance(bframes, bool)
            or not isinstance(bframes, (int, np.integer))
            or not 0 <= bframes <= MAX_BFRAMES
        ):
            raise CodecError(
                f"elic-ip: bframes (anchor spacing) must be an integer in 0..{MAX_BFRAMES}, "
                f"got {bframes!r}"
            )
        self.bgop = int(bframes)  # 0: chosen per clip by choose_bgop
        if not isinstance(scenecut, bool):
            raise CodecError(f"elic-ip: scenecut must be true or false, got {scenecut!r}")
        self.scenecut = scenecut  # an I frame at each scene cut (SCENECUT, CUT_RATIO)
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
    def _intra_encode(
        self, frame, quality: int, si: int | None = None
    ) -> tuple[bytes, tuple[np.ndarray, ...]]:
        """An I frame with ``elic-int`` at ``quality``, or (``si``: the quality's step index,
        ``TOOL_INTRA_BLOCK``) with whichever of it and the block intra coder costs less."""
        rgb = yuv420_to_rgb(*frame)
        enc, rec = self.intra.encode_with_reconstruction(rgb, quality)
        if list(enc.streams) != ["z", "y"]:
            raise CodecError(f"elic-ip: unexpected elic-int streams {list(enc.streams)}")
        z, y = enc.streams["z"], enc.streams["y"]
        best = (_varint(len(z)) + z + y, rgb_to_yuv420(rec))
        if si is None:
            return best
        lam = INTRA_LAMBDA * RD_LAMBDA * (STEP_GRID[si] / 16) ** 2

        def cost(payload, planes) -> float:
            sse = sum(
                float(((a.astype(np.int64) - b) ** 2).sum())
                for a, b in zip(frame, planes, strict=True)
            )
            return sse + lam * 8 * len(payload)

        best = (bytes([INTRA_ELIC]) + best[0], best[1])
        if INTRA_CHOICE == INTRA_ELIC:
            return best
        best_cost = float("inf") if INTRA_CHOICE == INTRA_BLOCK else cost(*best)
        previous = float("inf")
        for off in INTRA_STEPS:  # finest first; the cost is about convex in the step, so the
            k = min(max(si + off, 0), len(STEP_GRID) - 1)  # first rise ends the search
            payload, planes = self._block_intra_encode(frame, k)
            c = cost(payload, planes)
            if c < best_cost:
                best, best_cost = (payload, planes), c
            if c > previous:
                break
            previous = c
        return best

    @staticmethod
    def _block_intra_encode(frame, si: int) -> tuple[bytes, tuple[np.ndarray, ...]]:
        # levels and modes at the P frames' residual lambda (per bit, in squared steps)
        stream, planes = video_intra.encode_frame(frame, si, RD_LAMBDA, _plane_weight)
        return bytes([INTRA_BLOCK]) + stream, planes

    def _intra_decode(self, payload: bytes, h: int, w: int, quality: int, tools: int = TOOLS):
        if tools & TOOL_INTRA_BLOCK:
            if not payload or payload[0] not in (INTRA_ELIC, INTRA_BLOCK):
                raise CodecError("elic-ip: unknown I frame coding in the stream")
            if payload[0] == INTRA_BLOCK:
                return video_intra.decode_frame(payload[1:], h, w)
            payload = payload[1:]
        z, pos = _take(payload, 0)
        header = {"quality": quality, "shape": (h, w, 3), "weights_sha256": None}
        enc = Encoded("elic-int", header, {"z": z, "y": payload[pos:]})
        return rgb_to_yuv420(self.intra.decode(enc))

    def _inter_encode(
        self,
        refs,
        frame,
        si: int,
        state=None,
        dist: tuple[int, int] | None = None,
        reference: bool = True,
    ) -> tuple[bytes, tuple[np.ndarray, ...]]:
        """Code one P frame (``refs``: its reference) or B frame (``refs``: the earlier and the
        later reference, ``dist``: the frame's distances to them) with quantiser step
        ``STEP_GRID[si]``: (payload, reconstruction). The payload starts with the step's index,
        so an encoder may pick it per frame. ``reference``: later frames predict from this one
        (with ``WIENER_REFS`` False its loop filters stay off)."""
        tools = _encoder_tools(dist is not None)
        model = self._inter_model(tools)
        state = GopState() if state is None else state
        step = STEP_GRID[si]
        lam = LAMBDA_PER_STEP * step / 16
        modes = None
        sharp = _use_sharp(si)
        if dist is None:
            ref = refs[0]
            models = state.joint if RD_MOTION else None
            lam_sse = MV_LAMBDA * RD_LAMBDA * (step / 16) ** 2
            split = state.split if TOOLS & TOOL_SPLIT and models is not None else None
            mv = estimate(
                frame[0], ref[0], lam, models=models, lam_sse=lam_sse, split_models=split,
                sharp=sharp,
            )  # fmt: skip
            if isinstance(mv, tuple):
                pred = predict_frame_split(ref, mv[2], mv[1], sharp)
            else:
                pred = predict_frame(ref, mv, bool(TOOLS & TOOL_OBMC), sharp)

        else:
            d0, d1 = dist
            lam_b = B_LAMBDA * RD_LAMBDA * (step / 16) ** 2
            mv, modes = estimate_b(
                frame[0],
                refs[0][0],
                refs[1][0],
                d0,
                d1,
                lam,
                state.b_joint,
                state.b_modes,
                lam_sse=lam_b,
                sharp=sharp,
            )
            pred = self._b_prediction(refs, mv, modes, d0, d1, bool(TOOLS & TOOL_OBMC), sharp)
        kinds = ("luma", "chroma", "chroma")
        mse = [  # the prediction's, for the chroma planes' lambda (_plane_weight)
            float(np.mean((f.astype(np.float64) - p) ** 2))
            for f, p in zip(frame, pred, strict=True)
        ]
        steps = [STEP_GRID[_plane_step(si, i, CHROMA_STEP)] for i in range(3)]
        if RD_LAMBDA > 0 and TOOLS & TOOL_RES_ADAPTIVE:
            # levels at the adaptive coder's code lengths under the present states; where the
            # plane's contexts are still unseen (or always, RES_RD_TRIAL), first at the frozen
            # tables' and those levels coded on a copy of the states (encoder only)
            scratch = state.resid.copy()
            qs = []
            for f, p, k, i in zip(frame, pred, kinds, range(3), strict=True):
                r = _pad8(f.astype(np.int32) - p)
                lam_i = RD_LAMBDA * _plane_weight(mse, i)
                psi = _plane_step(si, i, CHROMA_STEP)
                base = residual_base(k, psi)
                hints = prediction_hints(_pad8(p.astype(np.int32)), steps[i])
                q1 = None
                if RES_RD_TRIAL or not np.any(scratch[base : base + RES_SET] >> 16):
                    q1 = (  # the DCT has no frozen tables: plain rounding for the trial
                        model.quantise(r, k, steps[i])
                        if tools & TOOL_DCT_INTER
                        else model.quantise_rd(r, k, steps[i], RD_LAMBDA)
                    )
                    adaptive_plane_bits(q1, hints, scratch, base)
                qs.append(
                    quantise_rd_adaptive(model, r, k, steps[i], lam_i, scratch, base, hints, q1)
                )
        elif RD_LAMBDA > 0:
            qs = [
                model.quantise_rd(_pad8(f.astype(np.int32) - p), k, st, RD_LAMBDA)
                for f, p, k, st in zip(frame, pred, kinds, steps, strict=True)
            ]
        else:
            qs = [
                model.quantise(_pad8(f.astype(np.int32) - p), k, st)
                for f, p, k, st in zip(frame, pred, kinds, steps, strict=True)
            ]
        sinks = EncoderSinks()
        lams = [  # the loop filter's, per bit in squared pixels (infinite: off)
            RD_LAMBDA * _plane_weight(mse, i) * (steps[i] / 16) ** 2
            if WIENER_REFS or not reference
            else float("inf")
            for i in range(3)
        ]
        recon = self._inter(
            sinks["p"], refs, si, tools, mv, qs, state, dist, modes, CHROMA_STEP, (frame, lams),
            sharp,
        )  # fmt: skip
        return bytes([si | (SHARP_FLAG if sharp else 0)]) + sinks.finish()["p"], recon

    def _inter_model(self, tools: int) -> ResidualModel:
        """The inter frames' residual transform: the learned KLT of the weights file, or with
        ``TOOL_DCT_INTER`` the integer DCT (the KLT's encoder rounding offset)."""
        klt = self.residual()[0]
        return video_intra.dct_model(klt.rounding) if tools & TOOL_DCT_INTER else klt

    @staticmethod
    def _b_prediction(refs, mv, modes, d0: int, d1: int, obmc: bool, sharp: bool = False):
        fwd = predict_frame(refs[0], mv, obmc, sharp)
        bwd = predict_frame(refs[1], scale_vectors(mv, d0, d1), obmc, sharp)
        return blend_modes(fwd, bwd, modes)

    def _inter(
        self,
        sink,
        refs,
        si: int,
        tools: int,
        mv=None,
        qs=None,
        state=None,
        dist=None,
        modes=None,
        cstep: int = 0,
        source=None,
        sharp: bool = False,
    ):
        """Code (``mv``, ``qs`` given) or decode (None) one P or B frame's stream through
        ``sink``, with the coding ``tools`` of the file; ``state``: the GOP's vector statistics
        (``GopState``: used with ``TOOL_MV_CARRY``; None makes a fresh one); ``dist``: a B
        frame's distances to its references (None: a P frame), ``modes`` its block modes;
        ``cstep``: the chroma planes' step offset (``TOOL_CHROMA_STEP``); ``source``: the
        encoder's (frame, lambda per plane) for the loop filter's choice (``TOOL_WIENER``);
        ``sharp``: luma sub-pel samples by the 8-tap filters (``TOOL_SHARP``)."""
        model = self._inter_model(tools)
        state = GopState() if state is None else state
        h, w = refs[0][0].shape
        shape = (-(-h // BLOCK), -(-w // BLOCK))
        obmc = bool(tools & TOOL_OBMC)
        if dist is not None:
            mv = code_vectors_joint(sink, shape, mv, state.b_joint)
            modes = code_modes(sink, shape, modes, state.b_modes)
            pred = self._b_prediction(refs, mv, modes, dist[0], dist[1], obmc, sharp)
        else:
            carry = tools & TOOL_MV_CARRY
            if tools & TOOL_SPLIT:  # split flags, the blocks' vectors, the split ones' others
                smodels = state.split if carry else SplitModels()
                if not isinstance(mv, tuple):  # decoding, or an encoder that split nothing
                    mv = (mv, None if mv is None else np.zeros(shape, np.int64), None)
                split = code_split_flags(sink, shape, mv[1], smodels)
                models = state.joint if carry else VectorModels()
                base = code_vectors_joint(sink, shape, mv[0], models)
                field = code_sub_vectors(sink, base, split, mv[2], smodels)
                pred = predict_frame_split(refs[0], field, split, sharp)
            else:
                if tools & TOOL_MV_JOINT:
                    models = state.joint if carry else VectorModels()
                    mv = code_vectors_joint(sink, shape, mv, models)
                else:
                    mv = code_vectors(sink, shape, mv, state.mvd if carry else None)
                pred = predict_frame(refs[0], mv, obmc, sharp)
        out = []
        for i, p in enumerate(pred):
            step = STEP_GRID[_plane_step(si, i, cstep)]
            kind = "luma" if i == 0 else "chroma"
            ph, pw = p.shape
            q = None if qs is None else qs[i]
            grid = (-(-ph // TB), -(-pw // TB))
            if tools & TOOL_RES_ADAPTIVE:
                base = residual_base(kind, _plane_step(si, i, cstep))
                hints = prediction_hints(_pad8(p.astype(np.int32)), step)
                q = code_plane_adaptive(sink, grid, q, hints, state.resid, base)
            else:
                q = model.code_plane(sink, kind, grid, q)
            res = model.dequantise(q, kind, step)[:ph, :pw]
            rec = np.clip(p + res, 0, 255).astype(np.uint8)
            rec = deblock(rec, step) if tools & TOOL_DEBLOCK else rec
            if tools & TOOL_WIENER:
                src, lam = (None, 0.0) if source is None else (source[0][i], source[1][i])
                rec = video_filter.code_plane(sink, rec, i, state.filter, src, lam)
            out.append(rec)
        return tuple(out)

    def _p_decode(
        self, payload: bytes, ref, tools: int = TOOLS, state=None, refs=None, dist=None, cstep=0
    ):
        """Decode a P frame from ``ref`` (or a B frame from ``refs`` at distances ``dist``)."""
        if not payload:
            raise CodecError("elic-ip: an empty inter frame")
        si, sharp = payload[0], False
        if tools & TOOL_SHARP:
            si, sharp = si & ~SHARP_FLAG, bool(si & SHARP_FLAG)
        if si >= len(STEP_GRID):
            raise CodecError("elic-ip: bad quantiser step in an inter frame")
        sink = DecoderSinks({"p": payload[1:]})["p"]
        refs = (ref,) if refs is None else refs
        return self._inter(sink, refs, si, tools, state=state, dist=dist, cstep=cstep, sharp=sharp)

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
        lo, hi = self.quality_range
        iq = min(max(iq + INTRA_OFFSET, lo), hi)  # the header's quality is the I frames'
        steps = np.array(STEP_GRID)
        si = int(
            np.abs(steps - STEP_SCALE * int(self.residual()[0].steps[qi])).argmin()
        )  # the quality's step
        streams: dict[str, bytes] = {}
        sizes: dict[int, int] = {}
        parts: list[bytes] = []
        bgop = self.bgop
        if bgop == 0 and self.gop <= 2:  # no room for a B frame between I frames
            bgop = 1
        if bgop == 0:  # look at the clip's first frames, then code them as well
            data = iter(data)
            head = list(itertools.islice(data, max(d for d, _ in AUTO_BGOP) + 1))
            bgop = choose_bgop([f[0] for f in head])
            data = itertools.chain(head, data)
        src: dict[int, Any] = {}  # source frames of the open interval (after its anchor)
        recon: dict[int, tuple[np.ndarray, ...]] = {}  # decoded frames still needed
        anchor = start = 0
        state = GopState()
        cuts: list[int] = []
        previous = None  # the last frame's luma (scene cuts)

        def step_of(index: int, depth: int) -> int:
            if bgop == 1:
                off = P_STEP_PATTERN[(index % self.gop - 1) % len(P_STEP_PATTERN)]
            else:
                off = B_STEP[min(depth, len(B_STEP)) - 1] if depth else B_ANCHOR_STEP
            return min(max(si + off, 0), len(STEP_GRID) - 1)

        def close(a: int, b: int) -> None:
            """Code the frames a + 1 .. b (P at b, then B frames) and hand them out."""
            order = coding_order(a, b + 1, bgop)
            used = {j for _, refs, _ in order for j in refs} | {b}
            for index, refs, depth in order[1:]:
                r = tuple(recon[j] for j in refs)
                dist = (index - refs[0], refs[1] - index) if len(refs) == 2 else None
                sk = step_of(index, depth)
                payload, recon[index] = self._inter_encode(
                    r, src[index], sk, state, dist, index in used
                )
                parts.append(_varint(len(payload)) + payload)
                sizes[index] = len(payload)
            for j in range(a + 1, b + 1):
                if keep is not None:
                    keep(j, src[j], recon[j])
                del src[j]
                if j != b:
                    del recon[j]
            del recon[a]

        n = 0
        for i, frame in enumerate(data):
            n = i + 1
            cut = (
                SCENECUT
                and self.scenecut
                and CUT_GAP <= i - start < self.gop
                and len(cuts) < MAX_CUTS
                and scene_change(previous, frame[0]) >= CUT_RATIO
            )
            previous = frame[0]
            if cut:
                cuts.append(i)
            if i - start == self.gop or cut or i == 0:
                if src:
                    close(anchor, i - 1)
                if parts:
                    streams[f"g{len(streams)}"] = b"".join(parts)
                    parts = []
                start = i
                recon.clear()
                block_si = si if TOOLS & TOOL_INTRA_BLOCK else None
                payload, recon[i] = self._intra_encode(frame, iq, block_si)
                parts.append(_varint(len(payload)) + payload)
                sizes[i] = len(payload)
                if keep is not None:
                    keep(i, frame, recon[i])
                state = GopState()
                anchor = i
            else:
                src[i] = frame
                if i - anchor == bgop:
                    close(anchor, i)
                    anchor = i
        if src:
            close(anchor, n - 1)
        if parts:
            streams[f"g{len(streams)}"] = b"".join(parts)
        tools = _encoder_tools(bgop > 1, bool(cuts))
        header = {
            "model_id": self.model_id(),
            "weights_sha256": self.weights_sha256(),
            "quality": iq,
            "gop": self.gop,
            "shape": (n, info.height, info.width, 3),
            "colorspace": "yuv420",
            "bit_depth": 8,
            "tools": tools,
        }
        if bgop > 1:
            header["bgop"] = bgop
        if CHROMA_STEP:
            header["cstep"] = int(CHROMA_STEP)
        if cuts:
            header["cuts"] = cuts
        return Encoded(self.name, header, streams), [sizes[i] for i in range(n)]

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
        if isinstance(tools, bool) or not isinstance(tools, int) or tools & ~KNOWN_TOOLS:
            raise CodecError(f"elic-ip: unknown coding tools {tools!r} in the header")
        bgop = _bgop(hdr, tools)
        cstep = _cstep(hdr, tools)
        if tools & TOOL_SPLIT and not tools & TOOL_OBMC:
            raise CodecError("elic-ip: split blocks in a file without overlapped compensation")
        if tools & TOOL_DCT_INTER and not tools & TOOL_RES_ADAPTIVE:
            raise CodecError("elic-ip: the DCT residual needs the adaptive residual contexts")
        iq, qi = self._steps(int(hdr["quality"]))
        frames, h, w = shape[:3]
        starts = gop_starts(frames, gop, _cuts(hdr, tools, frames))
        ngops = len(starts)
        missing = [f"g{k}" for k in range(ngops) if f"g{k}" not in encoded.streams]
        if missing or len(encoded.streams) != ngops:
            raise CodecError(f"elic-ip: the file's GOP segments are incomplete ({frames} frames)")
        self.residual()  # refuse before the first frame when the weights are absent
        return self._frames(encoded.streams, frames, starts, h, w, iq, tools, bgop, cstep)

    @staticmethod
    def frame_sizes(data: bytes) -> list[int]:
        """Payload bytes of every frame of an ``elic-ip`` .ncf file, in display order."""
        from neuralcodec.container import unpack
        from neuralcodec.container.bridge import to_encoded

        encoded = to_encoded(unpack(data))
        streams, hdr = encoded.streams, encoded.header
        frames, gop = int(hdr["shape"][0]), int(hdr["gop"])
        tools = int(hdr.get("tools", 0))
        bgop = _bgop(hdr, tools)
        starts = gop_starts(frames, gop, _cuts(hdr, tools, frames))
        sizes: dict[int, int] = {}
        for k, (a, b) in enumerate(zip(starts, [*starts[1:], frames], strict=True)):
            buf, pos = streams.get(f"g{k}", b""), 0
            order = coding_order(a, b, bgop)
            for index, _, _ in order:
                if pos >= len(buf):
                    break
                n, pos = _read_varint(buf, pos)
                sizes[index] = n
                pos += n
        return [sizes[i] for i in sorted(sizes)]

    def _frames(self, streams, frames, starts, h, w, iq, tools, bgop=1, cstep=0):
        for k, (a, b) in enumerate(zip(starts, [*starts[1:], frames], strict=True)):
            buf, pos = streams[f"g{k}"], 0
            order = coding_order(a, b, bgop)
            last_use = {}
            for n, (_, refs, _) in enumerate(order):
                for j in refs:
                    last_use[j] = n
            done: dict[int, tuple[np.ndarray, ...]] = {}
            shown = a
            for n, (i, refs, _) in enumerate(order):
                payload, pos = _take(buf, pos)
                try:
                    if not refs:
                        done[i] = self._intra_decode(payload, h, w, iq, tools)
                        state = GopState()
                    elif len(refs) == 1:
                        done[i] = self._p_decode(payload, done[refs[0]], tools, state, cstep=cstep)
                    else:
                        r = (done[refs[0]], done[refs[1]])
                        dist = (i - refs[0], refs[1] - i)
                        done[i] = self._p_decode(payload, None, tools, state, r, dist, cstep)
                except (rangecoder.DecodeError, ValueError) as exc:
                    raise CodecError(f"elic-ip: corrupt frame {i}: {exc}") from None
                while shown in done:
                    yield done[shown]
                    shown += 1
                for j in [j for j in done if j < shown and last_use.get(j, -1) <= n]:
                    del done[j]
            if pos != len(buf):
                raise CodecError(f"elic-ip: GOP {k} has {len(buf) - pos} bytes after its frames")
