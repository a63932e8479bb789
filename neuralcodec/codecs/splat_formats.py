"""The splat file formats as benchmark-only codecs (``writes_ncf = False``): the baselines that
``codec bench splat`` puts beside ``splat-vq``.

::

    raw             INRIA 3DGS .ply, float32 (the trainer's own output; lossless)
    compressed-ply  PlayCanvas compressed.ply (chunked 11-10-11 / 2+10-10-10 / 8888 bit packing)
    splat           antimatter15 .splat (32 bytes a splat, SH dropped)

``compress(scene, 1)`` is the file's bytes, ``decompress(bytes)`` reads them back with the
project's own readers and writers (``datasets.splat``, ``datasets.splat_packed``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

from neuralcodec.codecs.base import Codec, CodecError, register
from neuralcodec.datasets.splat import GaussianScene, read_splat, write_splat


class _SplatFile(Codec):
    modality = "splat"
    writes_ncf = False
    quality_range = (1, 1)
    suffix: ClassVar[str]

    def _roundtrip_file(self, write: Any, read: bool) -> Any:
        with tempfile.TemporaryDirectory(prefix="splat-") as tmp:
            path = Path(tmp) / f"scene{self.suffix}"
            write(path)
            return read_splat(path) if read else path.read_bytes()

    def compress(self, data: Any, quality: int) -> bytes:
        self.check_quality(quality)
        if not isinstance(data, GaussianScene):
            raise CodecError(f"{self.name}: expected a GaussianScene, got {type(data).__name__}")
        return self._roundtrip_file(lambda p: write_splat(p, data), read=False)

    def decompress(self, data: bytes) -> GaussianScene:
        return self._roundtrip_file(lambda p: Path(p).write_bytes(bytes(data)), read=True)


@register
class RawPly(_SplatFile):
    name = "raw"
    suffix = ".ply"
    description = "INRIA 3DGS .ply, float32 (lossless reference)"


@register
class CompressedPly(_SplatFile):
    name = "compressed-ply"
    suffix = ".compressed.ply"
    description = "PlayCanvas compressed.ply (bit-packed chunks of 256)"


@register
class DotSplat(_SplatFile):
    name = "splat"
    suffix = ".splat"
    description = "antimatter15 .splat (32 bytes a splat, no SH)"


__all__ = ["CompressedPly", "DotSplat", "RawPly"]
