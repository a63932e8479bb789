"""Shipped weights of learned codecs: where they live, loading them once, checking them.

The shipped files are package data of ``neuralcodec.weights`` (``neuralcodec/weights/``; the
root ``weights`` link of a checkout points there), so ``weights_dir()`` finds them through
``importlib.resources`` in a checkout, an editable install and an installed wheel alike;
``$NEURALCODEC_WEIGHTS`` replaces that folder (e.g. with freshly exported weights).

A learned codec mixes in ``WeightsFile`` and names a ``load_weights(path) -> frozen model``
function; ``frozen()`` returns ``(frozen model, sha256 of the file)``, cached per path and
modification time, and fails with a ``WeightsError`` that says what to do when the file is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from ..models.frozen import WeightsError, sha256_file

WEIGHTS_ENV = "NEURALCODEC_WEIGHTS"
WEIGHTS_PACKAGE = "neuralcodec.weights"


def weights_dir() -> Path:
    """``$NEURALCODEC_WEIGHTS``, else the installed ``neuralcodec.weights`` package folder."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    folder = resources.files(WEIGHTS_PACKAGE)
    if not isinstance(folder, Path):  # e.g. a zipped install: the loaders need real files
        raise WeightsError(
            f"the shipped weights are not files on disk ({folder}); set {WEIGHTS_ENV}"
        )
    return folder


@lru_cache(maxsize=8)
def _load_cached(loader: Callable[[Path], Any], path: str, mtime: float) -> tuple[Any, str]:
    return loader(Path(path)), sha256_file(Path(path))


class WeightsFile:
    """Mixin: ``weights/<name>.safetensors`` (or an explicit path) holding a frozen model."""

    name: ClassVar[str]
    load_weights: ClassVar[Callable[[Path], Any]]

    def __init__(self, weights: Path | None = None):
        self.weights_path = Path(weights) if weights else weights_dir() / f"{self.name}.safetensors"

    def weights_available(self) -> bool:
        return self.weights_path.is_file()

    def frozen(self) -> tuple[Any, str]:
        if not self.weights_available():
            raise WeightsError(
                f"no weights for {self.name} at {self.weights_path} "
                f"(train them with `codec train` or pick a codec from `codec list`)"
            )
        p = self.weights_path
        return _load_cached(type(self).load_weights, str(p), p.stat().st_mtime)

    def weights_sha256(self, model_id: str | None = None) -> str:
        """sha256 of the weights file (one model per file, whatever ``model_id``)."""
        return self.frozen()[1]

    def check_weights(self, header: dict) -> None:
        """Refuse a file written with other weights than ours."""
        if header.get("weights_sha256") not in (None, self.weights_sha256()):
            raise WeightsError(f"the file needs other weights than {self.weights_path.name}")

    def info(self) -> dict:
        d = super().info()  # type: ignore[misc]
        d["weights"] = str(self.weights_path) if self.weights_available() else None
        return d
