"""Progress of long operations (an INR encode runs for minutes), for whoever listens.

Library code reports ``(stage, done, total)``; nothing happens unless a caller installed a
listener with ``listening`` (the CLI draws a bar on a terminal). The listener lives in a context
variable, so threads and nested calls do not see each other's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Listener = Callable[[str, int, int], None]
_listener: ContextVar[Listener | None] = ContextVar("neuralcodec_progress", default=None)


def report(stage: str, done: int, total: int) -> None:
    """``done`` of ``total`` units of ``stage`` are finished."""
    listener = _listener.get()
    if listener is not None:
        listener(stage, done, total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the reports made inside the ``with`` block to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


class Counter:
    """Counts the units of one stage and reports each one."""

    def __init__(self, stage: str, total: int):
        self.stage, self.total, self.done = stage, total, 0

    def step(self) -> None:
        self.done += 1
        report(self.stage, self.done, self.total)
