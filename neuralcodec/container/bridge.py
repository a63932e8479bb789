"""Between codecs and the container: ``Encoded`` <-> ``NcfFile``, and the weights check.

Writing (``from_encoded``): keys of ``Encoded.header`` that are container fields (``model_id``,
``weights_sha256``, ``shape``, ``colorspace``, ``bit_depth``, ``quality``) become fields; every
other key joins ``metadata`` (with the codec's own ``metadata`` dict, if any). The codec name, id
and modality come from the codec class, never from the header dict.

Reading (``to_encoded``): the codec gets back one flat dict -- the metadata keys, the container
fields and ``metadata`` itself -- so a codec reads ``header["quality"]`` or ``header["lambda"]``
as it wrote them (JSON turns tuples into lists; ``shape`` is a tuple again).

Weights: a file with a non-empty ``weights_sha256`` decodes only with a codec whose
``weights_sha256(model_id)`` (``Codec`` declares it) returns the same digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neuralcodec.codecs.base import Codec, CodecError, Encoded, codec_class, name_for_id
from neuralcodec.container.binary import NcfFile
from neuralcodec.container.fields import FIELD_NAMES, ContainerError

CODEC_FIELDS = ("model_id", "weights_sha256", "shape", "colorspace", "bit_depth", "quality")
_IDENTITY = ("codec", "codec_id", "codec_name", "modality")


def split_header(header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(container fields, metadata) of a codec's header dict."""
    rest = {k: v for k, v in header.items() if k not in CODEC_FIELDS and k not in _IDENTITY}
    metadata = dict(rest.pop("metadata", None) or {})
    for key, value in rest.items():
        if key in metadata and metadata[key] != value:
            raise ContainerError(f"header key {key!r} given twice with different values")
        metadata[key] = value
    fields = {k: header[k] for k in CODEC_FIELDS if k in header and header[k] is not None}
    return fields, metadata


def from_encoded(
    codec: Codec, encoded: Encoded, overrides: dict[str, Any] | None = None
) -> NcfFile:
    """Container header + streams for what ``codec`` produced; ``overrides`` win over the codec."""
    if encoded.codec != codec.name:
        raise ContainerError(f"codec {codec.name} returned streams labelled {encoded.codec!r}")
    fields, metadata = split_header(encoded.header)
    overrides = dict(overrides or {})
    # the adapter's metadata (xyz dtype, attribute list, frame rate, ...) joins the codec's;
    # on a key both give, the adapter's value (the user's file) wins
    metadata.update(overrides.pop("metadata", None) or {})
    fields.update(overrides)
    header = {
        "codec_id": codec.codec_id,
        "codec_name": codec.name,
        "modality": codec.modality,
        "colorspace": "rgb" if codec.modality == "image" else "none",
        **fields,
        "metadata": metadata,
    }
    unknown = set(header) - set(FIELD_NAMES)
    if unknown:
        raise ContainerError(f"unknown header fields: {', '.join(sorted(unknown))}")
    return NcfFile(header=header, streams=dict(encoded.streams))


def to_encoded(
    ncf: NcfFile, streams: Mapping[str, bytes] | None = None, shape: tuple[int, ...] | None = None
) -> Encoded:
    """The ``Encoded`` a codec decodes: flat header dict (see module docstring) and its streams.

    ``shape`` replaces the file's shape in the codec's view (image codecs always see HxWx3).
    A lazy mapping (an ``NcfReader`` or a view of one) is passed on as it is, so the codec reads
    only the segments it uses; a dict is copied.
    """
    h = ncf.header
    src = ncf.streams if streams is None else streams
    metadata = dict(h["metadata"])
    header = {**metadata, **{k: h[k] for k in CODEC_FIELDS}, "metadata": metadata}
    header["shape"] = tuple(h["shape"] if shape is None else shape)
    return Encoded(
        codec=h["codec_name"],
        header=header,
        streams=dict(src) if isinstance(src, dict) else src,
    )


def resolve_codec_class(header: dict[str, Any]) -> type[Codec]:
    """The registered class for the file's codec id, checked against its name and modality."""
    try:
        name = name_for_id(header["codec_id"])
    except CodecError:
        raise ContainerError(
            f"unknown codec id {header['codec_id']} ({header['codec_name']!r}): not in this build"
        ) from None
    if name != header["codec_name"]:
        raise ContainerError(
            f"codec id {header['codec_id']} is {name!r} in this build but the file names {header['codec_name']!r}"
        )
    cls = codec_class(name)
    if cls.modality != header["modality"] or not cls.writes_ncf:
        raise ContainerError(f"codec {name!r} does not decode {header['modality']} .ncf files")
    return cls


def codec_weights_sha256(codec: Codec, model_id: str) -> str | None:
    """The sha256 of the weights ``codec`` holds for ``model_id``; None when it has none."""
    digest = codec.weights_sha256(model_id)
    return digest.lower() if isinstance(digest, str) and digest else None


def weights_status(codec: Codec, header: dict[str, Any]) -> str:
    """'not needed', 'ok', 'missing' or 'mismatch' for the weights the file was coded with."""
    want = header["weights_sha256"]
    if not want:
        return "not needed"
    try:
        have = codec_weights_sha256(codec, header["model_id"])
    except (OSError, ValueError, KeyError):
        have = None
    if have is None:
        return "missing"
    return "ok" if have == want else "mismatch"


def check_weights(codec: Codec, header: dict[str, Any]) -> None:
    """Raise ``ContainerError`` unless ``codec`` holds the exact weights the file needs."""
    status = weights_status(codec, header)
    model = header["model_id"] or "(no model id)"
    if status == "missing":
        raise ContainerError(f"codec {codec.name}: weights for model {model} are not available")
    if status == "mismatch":
        raise ContainerError(
            f"codec {codec.name}: weights for model {model} differ from the ones the file was coded with "
            f"(file sha256 {header['weights_sha256'][:12]}..)"
        )
