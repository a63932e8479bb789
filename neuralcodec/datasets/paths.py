"""Where data lives and how outputs are written safely.

* ``data_root()``: the one place that says where training and benchmark data live: an explicit
  argument (a command-line option), else ``$NEURALCODEC_DATA``, else ``../shared/data`` beside the
  neuralcodec checkout that holds the working directory, when that folder exists; otherwise a
  ``DataPathError`` that says to set ``NEURALCODEC_DATA`` or pass the folder as an option. It
  never depends on where the package itself is installed. Layout under the root: ``kodak/``
  (``kodak_dir()``, the test set), ``train/`` (training images), ``video/``, ``3d/``.
* ``atomic_output(path, force)``: a context manager that yields a temporary file in the destination
  directory; on success it is fsynced and moved into place, on any failure (exception, Ctrl-C) it is
  removed. Without ``force`` an existing destination is never replaced, even if it appears while
  the output is being written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

DATA_ENV = "NEURALCODEC_DATA"
PROJECT_NAME = "neuralcodec"


class OutputError(OSError):
    """An output path that cannot or must not be written."""


class DataPathError(ValueError):
    """No data folder was given and the default one does not exist."""


def checkout_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The neuralcodec source checkout holding ``start`` (default: the working directory): the
    nearest folder upwards whose ``pyproject.toml`` names the project; None outside one."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        try:
            meta = tomllib.loads((folder / "pyproject.toml").read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if meta.get("project", {}).get("name") == PROJECT_NAME:
            return folder
    return None


def data_root(override: str | os.PathLike[str] | None = None) -> Path:
    """``override``, else ``$NEURALCODEC_DATA``, else ``<checkout>/../shared/data`` if it exists."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    checkout = checkout_root()
    default = checkout.parent / "shared" / "data" if checkout else None
    if default is not None and default.is_dir():
        return default
    where = f"{default} does not exist" if default else "the working directory is not in a checkout"
    raise DataPathError(
        f"no data folder: set {DATA_ENV} or pass the folder as an option (--data / --dataset); "
        f"the default ../shared/data beside the neuralcodec checkout is unusable ({where})"
    )


def kodak_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """``<data root>/kodak``: the 24-image test set."""
    return data_root(override) / "kodak"


def check_output(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Raise ``OutputError`` unless ``path`` can be created (or replaced, with ``force``)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"output {path} is a directory")
    if path.exists() and not force:
        raise OutputError(f"output {path} exists (use --force to overwrite)")
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {parent} is not writable")
    return path


def _new_file_mode(existing: Path) -> int:
    with contextlib.suppress(OSError):
        return existing.stat().st_mode & 0o777
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 elsewhere."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _publish(tmp: str, path: Path, force: bool) -> None:
    """Move ``tmp`` to ``path``; without ``force`` fail if ``path`` exists (no race window)."""
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(f"output {path} exists (use --force to overwrite)") from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise OutputError(f"output {path} exists (use --force to overwrite)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], force: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file whose content appears at ``path`` only if the block succeeds."""
    path = check_output(path, force)
    directory = path.parent if str(path.parent) else Path(".")
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        _publish(tmp, path, force)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, force: bool = False) -> Path:
    """Write ``data`` to ``path`` through ``atomic_output``."""
    with atomic_output(path, force) as f:
        f.write(data)
    return Path(path)
