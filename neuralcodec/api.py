"""The library entry points used by the CLI, the demo and the benchmarks, for any modality.

A codec codes one modality; that modality's adapter (``neuralcodec.modalities``) owns the user's
side: file formats, the policy mapping the data onto what the codec takes (images:
``neuralcodec.modalities.image``), its header fields and its rate unit. This module pairs a codec
with its adapter and never looks at the modality itself::

    encode_file:  file --adapter.read--> data --adapter.prepare--> Prepared.coded
                  --Codec.encode--> Encoded --from_encoded (+ the adapter's fields and "ncf.*"
                  streams)--> NcfFile --pack--> .ncf (atomic write)
    decode_file:  .ncf --unpack--> NcfFile --check codec, weights, adapter.check_header-->
                  Codec.decode (header as adapter.coded_view shows it) --adapter.restore--> data
                  --adapter.write--> file in the modality's own format (atomic write)

Encoding picks the adapter of the codec's modality (without a codec: the one that reads the
input's extension, else the default modality's); decoding picks it by the file's header.
Reports give the rate in the adapter's unit (``rate``, ``rate_unit``) and, where that unit is
bits per pixel, as ``bpp`` too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neuralcodec.codecs.base import (
    Codec,
    CodecError,
    codec_class,
    codec_names,
    get_codec,
    ranked_names,
    weights_available,
)
from neuralcodec.container import (
    ContainerError,
    NcfFile,
    check_weights,
    from_encoded,
    open_ncf,
    pack,
    resolve_codec_class,
    to_encoded,
    unpack,
    weights_status,
)
from neuralcodec.datasets.paths import check_output, write_bytes_atomic
from neuralcodec.modalities.base import (
    RESERVED_STREAM_PREFIX,
    ModalityAdapter,
    adapter_for,
    adapter_for_path,
)

# The image policy's functions, for callers that apply it to an array themselves.
from neuralcodec.modalities.image import PreparedImage as PreparedImage
from neuralcodec.modalities.image import prepare_image as prepare_image
from neuralcodec.modalities.image import restore_image as restore_image

DEFAULT_MODALITY = "image"  # what a codec-less encode of an unrecognised file name assumes


# ----------------------------------------------------------------------------- codec choice


def default_codec(modality: str = DEFAULT_MODALITY) -> str:
    """The preferred (lowest ``rank``) registered ``.ncf`` codec of ``modality`` whose weights
    are available here."""
    for name in ranked_names(modality, ncf_only=True):
        if weights_available(name):
            return name
    raise CodecError(f"no {modality} codec with available weights is registered; pass --codec")


def default_quality(codec: Codec | type[Codec]) -> int:
    lo, hi = codec.quality_range
    return (lo + hi) // 2


def _ncf_codec(
    name: str | None, modality: str = DEFAULT_MODALITY, options: dict[str, Any] | None = None
) -> Codec:
    """The codec ``name`` (default: the best one for ``modality``), built with its ``options``
    (encoder settings such as the INR codec's ``preset``)."""
    name = name or default_codec(modality)
    cls = codec_class(name)
    if not cls.writes_ncf:
        ncf = ", ".join(codec_names(ncf_only=True)) or "none"
        raise CodecError(
            f"codec {name} is for benchmarks only and writes no .ncf files (use one of: {ncf})"
        )
    try:
        return get_codec(name, **(options or {}))
    except TypeError:
        raise CodecError(f"codec {name} takes no option {', '.join(options or {})}") from None


def modality_adapter(modality: str) -> ModalityAdapter:
    """The adapter of ``modality``; ``CodecError`` when this build has none."""
    try:
        return adapter_for(modality)
    except KeyError:
        raise CodecError(f"this build cannot read or write {modality} data (no adapter)") from None


def _input_adapter(src: str | os.PathLike[str], codec: str | None) -> ModalityAdapter:
    if codec:
        return modality_adapter(codec_class(codec).modality)
    try:
        return adapter_for_path(src)
    except KeyError:
        return modality_adapter(DEFAULT_MODALITY)


def _check_output_kind(adapter: ModalityAdapter, dst: str | os.PathLike[str]) -> None:
    if not adapter.accepts(dst, writing=True):
        ext = os.path.splitext(os.fspath(dst))[1] or "a name without extension"
        raise CodecError(
            f"cannot write {adapter.modality} data as {ext}: "
            f"the output must end in {', '.join(adapter.write_extensions) or '(none here)'}"
        )


# ----------------------------------------------------------------------------- reports


@dataclass
class EncodeReport:
    codec: str
    quality: int
    shape: tuple[int, ...]
    colorspace: str
    bit_depth: int
    bytes: int
    bpp: float | None  # the rate when its unit is bits per pixel, else None
    seconds: float
    notes: list[str] = field(default_factory=list)
    src: str | None = None
    dst: str | None = None
    modality: str = DEFAULT_MODALITY
    rate: float | None = None
    rate_unit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DecodeReport:
    codec: str
    quality: int
    shape: tuple[int, ...]
    bytes: int
    seconds: float
    src: str | None = None
    dst: str | None = None
    modality: str = DEFAULT_MODALITY

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(adapter: ModalityAdapter | None, num_bytes: int, header: dict[str, Any]) -> dict:
    """``rate`` and ``rate_unit`` (None without an adapter or a size), plus ``bpp`` (None
    unless the unit is bits per pixel)."""
    rate = None if adapter is None else adapter.rate(num_bytes, header)
    if rate is None or rate != rate:
        return {"rate": None, "rate_unit": None, "bpp": None}
    unit = adapter.rate_unit
    return {"rate": rate, "rate_unit": unit, "bpp": rate if unit == "bpp" else None}


# ----------------------------------------------------------------------------- encode / decode


def _encode(
    codec: Codec, adapter: ModalityAdapter, data: Any, quality: int
) -> tuple[NcfFile, list[str]]:
    prepared = adapter.prepare(data)
    encoded = codec.encode(prepared.coded, quality)
    clash = [n for n in encoded.streams if n.startswith(RESERVED_STREAM_PREFIX)]
    if clash:
        raise CodecError(f"codec {codec.name} used reserved stream names {clash}")
    ncf = from_encoded(codec, encoded, {**prepared.fields, "quality": quality})
    ncf.streams.update(prepared.streams)
    return ncf, prepared.notes


def encode_with_report(
    data: Any,
    codec_name: str | None = None,
    quality: int | None = None,
    options: dict[str, Any] | None = None,
    modality: str = DEFAULT_MODALITY,
) -> tuple[bytes, EncodeReport]:
    """``encode_array`` plus what happened (codec, quality, size, rate, time, policy notes)."""
    codec = _ncf_codec(codec_name, modality, options)
    adapter = modality_adapter(codec.modality)
    q = codec.check_quality(default_quality(codec) if quality is None else quality)
    start = time.perf_counter()
    ncf, notes = _encode(codec, adapter, data, q)
    packed = pack(ncf)
    seconds = time.perf_counter() - start
    h = unpack(packed).header  # the bytes we hand out must parse; defaults filled in
    report = EncodeReport(
        codec=codec.name,
        quality=q,
        shape=tuple(h["shape"]),
        colorspace=h["colorspace"],
        bit_depth=h["bit_depth"],
        bytes=len(packed),
        seconds=seconds,
        notes=notes,
        modality=codec.modality,
        **_rate(adapter, len(packed), h),
    )
    return packed, report


def encode_array(
    data: Any,
    codec_name: str | None = None,
    quality: int | None = None,
    options: dict[str, Any] | None = None,
    modality: str = DEFAULT_MODALITY,
) -> bytes:
    """The bytes of an ``.ncf`` file coding ``data`` with ``codec_name`` (default: the best
    codec of ``modality``), after the codec's modality adapter prepared it."""
    return encode_with_report(data, codec_name, quality, options, modality)[0]


def _codec_for(ncf: NcfFile) -> Codec:
    """The codec that decodes ``ncf``, after checking its id, name, modality and weights."""
    codec = get_codec(resolve_codec_class(ncf.header).name)
    check_weights(codec, ncf.header)
    return codec


class _CodecStreams(Mapping[str, bytes]):
    """The codec's streams of a file: every stream but the adapter's, read when asked."""

    def __init__(self, streams: Mapping[str, bytes]):
        self._streams = streams
        self._names = [n for n in streams if not n.startswith(RESERVED_STREAM_PREFIX)]

    def __getitem__(self, name: str) -> bytes:
        if name.startswith(RESERVED_STREAM_PREFIX):
            raise KeyError(name)
        return self._streams[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _decode_with(codec: Codec, adapter: ModalityAdapter, ncf: NcfFile) -> Any:
    header = ncf.header
    adapter.check_header(header)
    own = {k: ncf.streams[k] for k in ncf.streams if k.startswith(RESERVED_STREAM_PREFIX)}
    encoded = to_encoded(ncf, _CodecStreams(ncf.streams))
    encoded.header.update(adapter.coded_view(header))
    return adapter.restore(codec.decode(encoded), header, own)


def _optional_adapter(modality: str) -> ModalityAdapter | None:
    try:
        return adapter_for(modality)
    except KeyError:
        return None


def header_info(ncf: NcfFile, file_bytes: int) -> dict[str, Any]:
    """A JSON-able summary of a parsed file: every header field, streams, size and rate."""
    h = ncf.header
    info: dict[str, Any] = {"format_version": ncf.version, **h, "shape": list(h["shape"])}
    info["streams"] = [{"name": n, "bytes": b} for n, b in ncf.stream_sizes().items()]
    info["file_bytes"] = file_bytes
    rates = _rate(_optional_adapter(h["modality"]), file_bytes, h)
    for key in ("rate", "bpp"):
        if rates[key] is not None:
            rates[key] = round(rates[key], 6)
    info.update(rates)
    return info


def decode_bytes(data: bytes) -> tuple[Any, dict[str, Any]]:
    """Decode the bytes of an ``.ncf`` file: (data in its original layout, header info)."""
    ncf = unpack(data)
    adapter = modality_adapter(ncf.header["modality"])
    return _decode_with(_codec_for(ncf), adapter, ncf), header_info(ncf, len(data))


def encode_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    codec: str | None = None,
    quality: int | None = None,
    force: bool = False,
    options: dict[str, Any] | None = None,
    read_options: dict[str, Any] | None = None,
) -> EncodeReport:
    """Encode the file ``src`` into the ``.ncf`` file ``dst`` (never half-written);
    ``read_options`` go to the adapter's reader (video: ``max_frames``)."""
    check_output(dst, force)
    adapter = _input_adapter(src, codec)
    data = adapter.read(src, **(read_options or {}))
    packed, report = encode_with_report(data, codec, quality, options, adapter.modality)
    write_bytes_atomic(dst, packed, force=force)
    report.src, report.dst = str(src), str(dst)
    return report


def decode_file(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], force: bool = False
) -> DecodeReport:
    """Decode the ``.ncf`` file ``src`` into ``dst``, written by the adapter of the file's
    modality in its own format (images: PNG at the original size, channels and depth)."""
    check_output(dst, force)
    with open_ncf(src) as reader:  # segments are read when the codec asks for them
        ncf = reader.ncf()
        h = ncf.header
        adapter = modality_adapter(h["modality"])
        _check_output_kind(adapter, dst)
        codec = _codec_for(ncf)
        start = time.perf_counter()
        data = _decode_with(codec, adapter, ncf)
        # inside the ``with``: a streamed decoder (video) reads its segments while writing
        adapter.write(dst, data, h, force=force)
        seconds = time.perf_counter() - start
    size = Path(src).stat().st_size
    shape = tuple(h["shape"])
    return DecodeReport(
        h["codec_name"], h["quality"], shape, size, seconds, str(src), str(dst), h["modality"]
    )


def file_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Header, streams, size and rate of an ``.ncf`` file, plus whether this build decodes it.
    Reads the header and the segment index only."""
    with open_ncf(path) as reader:
        ncf = reader.ncf()
        info = header_info(ncf, reader.file_bytes)
    try:
        cls = resolve_codec_class(ncf.header)
        info["codec_known"] = True
        info["weights"] = weights_status(get_codec(cls.name), ncf.header)
    except (ContainerError, CodecError, OSError) as exc:
        info["codec_known"] = False
        info["weights"] = f"cannot check: {exc}"
    return info


def list_codecs() -> list[dict[str, Any]]:
    """Every registered codec: name, id, modality, qualities, .ncf or benchmark-only, weights,
    preference rank and why it is slow (None: it is not)."""
    rows = []
    for name in codec_names():
        cls = codec_class(name)
        row = {
            "name": name,
            "codec_id": cls.codec_id,
            "modality": cls.modality,
            "qualities": list(cls.quality_range),
            "writes_ncf": cls.writes_ncf,
            "description": cls.description,
            "rank": cls.rank,
            "slow_reason": cls.slow_reason,
            "weights_available": weights_available(name),
        }
        rows.append(row)
    return rows


def encode_video_clip(
    src: str | os.PathLike[str],
    quality: int,
    out: str | os.PathLike[str],
    codec: str | None = None,
    frames: int | None = None,
    gop: int = 32,
    force: bool = False,
) -> dict[str, Any]:
    """Encode a video clip at ``quality``, decode it into ``out`` (.y4m, or an .mp4 preview)
    and report what happened, for the demo: ``{codec, quality, gop, frames, bytes, bpp, kbps,
    psnr (6:1:1 Y'CbCr), psnr_y, psnr_u, psnr_v, encode_fps, decode_fps, frame_bytes (per
    frame, None if the codec does not say), ncf (the file's bytes), decoded (path)}``.

    Holds the clip's original and decoded frames for the PSNR: meant for short clips."""
    from neuralcodec.bench.video import summarise
    from neuralcodec.datasets.video import frames_source, write_video

    check_output(out, force)
    codec = codec or default_codec("video")
    adapter = modality_adapter("video")
    source = adapter.read(src, max_frames=frames)
    orig = list(source)
    start = time.perf_counter()
    data, _ = encode_with_report(source, codec, quality, {"gop": gop}, "video")
    enc_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded_source, info = decode_bytes(data)
    decoded = list(decoded_source)
    dec_s = time.perf_counter() - start
    write_video(out, frames_source(decoded_source.info, iter(decoded)), force=force)
    sizes = getattr(codec_class(codec), "frame_sizes", None)
    point = summarise(orig, decoded, len(data), float(source.info.fps), enc_s, dec_s)
    point.update(
        codec=codec,
        quality=info["quality"],
        gop=gop,
        frame_bytes=sizes(data) if sizes else None,
        ncf=data,
        decoded=str(out),
    )
    return point
