"""The one place that picks a kernel's implementation.

Every kernel module lists its implementations, fastest first, the reference last::

    IMPLEMENTATIONS = (Implementation("c", fast_fn, usable_fn), ..., reference("reference", fn))

``usable(*args)`` says whether an implementation can run *this* call: its extension or Triton
imported, the tensors on a device it handles. ``select`` returns the first usable one; nothing
is switched globally, so two calls with different devices may take different paths. Forcing:

* ``impl="reference"`` (or another implementation's name) on a single call;
* ``NEURALCODEC_KERNELS=reference`` in the environment, read at every call (tests, bisecting a
  wrong result). ``NEURALCODEC_KERNELS=c,reference`` allows only those names, in kernel order.

A future kernel (e.g. a Triton context-model fusion) is one more module with its tuple and one
more entry in ``kernels.__init__``'s ``KERNELS``; callers do not change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FORCE_ENV = "NEURALCODEC_KERNELS"


@dataclass(frozen=True)
class Implementation:
    name: str  # "c", "triton", "autograd", "reference"
    fn: Callable[..., Any]
    usable: Callable[..., bool]


def always(*args: Any, **kwargs: Any) -> bool:
    return True


def reference(fn: Callable[..., Any]) -> Implementation:
    return Implementation("reference", fn, always)


def allowed_names() -> tuple[str, ...] | None:
    """Names allowed by ``$NEURALCODEC_KERNELS`` (None: all)."""
    env = os.environ.get(FORCE_ENV, "").strip()
    return tuple(n.strip() for n in env.split(",") if n.strip()) or None


def select(
    kernel: str, impls: tuple[Implementation, ...], *args: Any, impl: str | None = None
) -> Implementation:
    """The implementation that runs ``kernel(*args)``; ``impl`` names one explicitly."""
    if impl is not None:
        for candidate in impls:
            if candidate.name == impl:
                if not candidate.usable(*args):
                    raise ValueError(
                        f"kernel {kernel}: implementation {impl!r} cannot run this call"
                    )
                return candidate
        names = ", ".join(c.name for c in impls)
        raise ValueError(f"kernel {kernel} has no implementation {impl!r} (has {names})")
    allowed = allowed_names()
    for candidate in impls:
        if (allowed is None or candidate.name in allowed) and candidate.usable(*args):
            return candidate
    return impls[-1]


def call(
    kernel: str, impls: tuple[Implementation, ...], *args: Any, impl: str | None = None
) -> Any:
    return select(kernel, impls, *args, impl=impl).fn(*args)
