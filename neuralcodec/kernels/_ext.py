"""The compiled kernel extensions, or None where they are not built (the references then run)."""

from __future__ import annotations

try:
    from . import _exact
except ImportError:  # pragma: no cover - a source tree without `setup.py build_ext`
    _exact = None
try:
    from . import _intnet
except ImportError:  # pragma: no cover
    _intnet = None
try:
    from . import _inr_arm
except ImportError:  # pragma: no cover
    _inr_arm = None


def exact_kernel(name: str):
    """The ``_exact`` function ``name``, or None where the extension is not built (or is an
    older build without it): callers then run their NumPy reference."""
    return getattr(_exact, name, None)


def has_exact(*args, **kwargs) -> bool:
    return _exact is not None


def has_inr_arm(*args, **kwargs) -> bool:
    return _inr_arm is not None


def has_intnet(*args, **kwargs) -> bool:
    return _intnet is not None
