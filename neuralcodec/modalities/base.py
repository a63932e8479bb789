"""The modality adapter protocol: everything about a kind of data that is not coding.

A codec codes one modality; the adapter of that modality owns the user's side of it::

    file --read--> data --prepare--> Prepared(coded, header fields, extra streams, notes)
         Prepared.coded --Codec.encode--> Encoded  (+ extra streams, header fields) -> container
    container -> Encoded --Codec.decode--> decoded --restore(decoded, header, extras)--> data
    data --write--> file (atomic; never overwrites unless asked)

* ``read``/``write``: the file formats of the modality (by extension), with one-line
  ``CodecError``/``OSError`` messages for anything unreadable;
* ``prepare``/``restore``: the policy that maps the user's data onto what every codec of the
  modality takes (e.g. images: gray, alpha and 16-bit onto HxWx3 uint8) and back;
* the typed header: ``prepare`` returns the container fields (``shape``, ``colorspace``,
  ``bit_depth``, ...) and metadata it owns; ``check_header`` refuses a header whose claims are
  absurd before any decoding work starts;
* the rate unit: ``rate(num_bytes, header)`` in ``rate_unit`` (bpp, bits per point, ...).

``api`` asks ``adapter_for(codec.modality)`` and never branches on the modality itself.
Streams whose names start with ``RESERVED_STREAM_PREFIX`` belong to the adapter, not the codec.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

RESERVED_STREAM_PREFIX = "ncf."


@dataclass
class Prepared:
    """The user's data split into what the codec codes and what the container records."""

    coded: Any  # what Codec.encode receives
    fields: dict[str, Any]  # container header fields owned by the adapter (shape, colorspace, ...)
    streams: dict[str, bytes] = field(default_factory=dict)  # adapter streams, names "ncf.*"
    notes: list[str] = field(default_factory=list)  # policy notes for the report


class ModalityAdapter:
    """Base class of the adapters; one instance per modality, registered with ``@adapter``."""

    modality: ClassVar[str]
    rate_unit: ClassVar[str]  # "bpp", "bits/point", "bits/vertex", "bytes/splat"
    read_extensions: ClassVar[tuple[str, ...]] = ()
    write_extensions: ClassVar[tuple[str, ...]] = ()

    def read(self, path: str | os.PathLike[str], **options: Any) -> Any:
        raise NotImplementedError

    def write(
        self, path: str | os.PathLike[str], data: Any, header: dict[str, Any], force: bool = False
    ) -> None:
        raise NotImplementedError

    def prepare(self, data: Any) -> Prepared:
        raise NotImplementedError

    def restore(self, decoded: Any, header: dict[str, Any], streams: dict[str, bytes]) -> Any:
        """Undo ``prepare``; ``streams`` holds the adapter's own ``ncf.*`` streams."""
        raise NotImplementedError

    def coded_view(self, header: dict[str, Any]) -> dict[str, Any]:
        """The header fields the codec sees in place of the file's (default: the same)."""
        return {}

    def check_header(self, header: dict[str, Any]) -> None:
        """Refuse (``ContainerError``) a header that claims absurd work; default: accept."""

    def accepts(self, path: str | os.PathLike[str], writing: bool = False) -> bool:
        """Whether this adapter reads (or writes) ``path``: by extension; adapters that share an
        extension (``.ply``: point clouds, meshes, splats) also look inside the file."""
        ext = os.path.splitext(os.fspath(path))[1].lower()
        return ext in (self.write_extensions if writing else self.read_extensions)

    def units(self, header: dict[str, Any]) -> int:
        """How many pixels, points, vertices or splats the rate is divided by."""
        raise NotImplementedError

    def rate(self, num_bytes: int, header: dict[str, Any]) -> float:
        n = self.units(header)
        scale = 1.0 if self.rate_unit.startswith("bytes") else 8.0
        return scale * num_bytes / n if n > 0 else float("nan")


_ADAPTERS: dict[str, ModalityAdapter] = {}

# Modules that register adapters when imported, imported lazily by ``adapter_for``; in the order
# ``adapter_for_path`` asks them (the more specific ``.ply`` readers before the point cloud's).
ADAPTER_MODULES = {
    "image": "neuralcodec.modalities.image",
    "video": "neuralcodec.modalities.video",
    "splat": "neuralcodec.modalities.splat",
    "mesh": "neuralcodec.modalities.mesh",
    "pointcloud": "neuralcodec.modalities.pointcloud",
}


def adapter(cls: type[ModalityAdapter]) -> type[ModalityAdapter]:
    """Class decorator: register one instance of ``cls`` for ``cls.modality``."""
    if cls.modality in _ADAPTERS and type(_ADAPTERS[cls.modality]) is not cls:
        raise RuntimeError(f"two adapters for modality {cls.modality!r}")
    _ADAPTERS[cls.modality] = cls()
    return cls


def adapter_for(modality: str) -> ModalityAdapter:
    """The adapter of ``modality``; ``KeyError`` when this build has none for it."""
    module = ADAPTER_MODULES.get(modality)
    if modality not in _ADAPTERS and module is not None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # an adapter module not written yet
            if exc.name != module:
                raise
    if modality not in _ADAPTERS:
        raise KeyError(modality)
    return _ADAPTERS[modality]


def adapter_for_path(path: str | os.PathLike[str], writing: bool = False) -> ModalityAdapter:
    """The first adapter that ``accepts`` ``path``; ``KeyError`` naming the extension if none."""
    for modality in dict.fromkeys([*ADAPTER_MODULES, *_ADAPTERS]):
        try:
            a = adapter_for(modality)
        except KeyError:
            continue
        if a.accepts(path, writing):
            return a
    raise KeyError(os.path.splitext(os.fspath(path))[1].lower() or os.fspath(path))
