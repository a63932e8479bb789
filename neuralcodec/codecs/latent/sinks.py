"""Sinks: where a latent codec's symbols go, so encoding, decoding and rate estimation share
one code path.

A latent codec computes, for each chunk of symbols, the table indexes (from what is already
known to both sides) and, on the encoder side, the values. It then calls
``sinks[stream].code(indexes, tables, values)``, which returns the chunk's values:

    EncoderSinks   writes ``values`` with a range encoder per stream     -> finish(): {name: bytes}
    DecoderSinks   ignores ``values`` (None) and reads them from a stream -> the decoded values
    CounterSinks   adds their ideal code length under the frozen tables   -> bits: {name: float}

Whatever the sink, the codec goes on with the values it gets back, so the decoder cannot drift
from the encoder and the estimated rate is that of the very symbols the encoder writes.

``code_ints(sets, states, values)`` is the same for adaptive binary context models
(``entropy/adaptive.py``, the ``ints`` binarisation): the states, updated in place, are the
model; both sides must make the same calls in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from neuralcodec.entropy import adaptive, rangecoder
from neuralcodec.entropy.cdf import information_bits
from neuralcodec.entropy.tables import CodingTables

from ..base import CodecError

INT_CHUNK = 1 << 16  # values per call of the adaptive integer binarisation (same stream)


class Sink:
    """One stream's sink; ``code`` returns the int32 values of the chunk."""

    decoding = False

    def code(
        self, indexes: np.ndarray, tables: CodingTables, values: np.ndarray | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def code_ints(
        self, sets: np.ndarray, states: np.ndarray, values: np.ndarray | None = None
    ) -> np.ndarray:
        """Signed integers under adaptive contexts (``sets``: one context set per value)."""
        raise NotImplementedError

    @staticmethod
    def _values(values: np.ndarray | None, indexes: np.ndarray) -> np.ndarray:
        if values is None:
            raise ValueError("an encoding sink needs the values")
        v = rangecoder.as_int32(np.asarray(values).reshape(-1), "values")
        if v.size != np.asarray(indexes).size:
            raise ValueError(f"{v.size} values for {np.asarray(indexes).size} indexes")
        return v


class _EncodeSink(Sink):
    def __init__(self) -> None:
        self.encoder = rangecoder.RangeEncoder()

    def code(self, indexes, tables, values=None):
        v = self._values(values, indexes)
        self.encoder.encode(v, np.asarray(indexes).reshape(-1), tables)
        return v

    def code_ints(self, sets, states, values=None):
        v = self._values(values, sets)
        s = np.asarray(sets).reshape(-1)
        for a in range(0, v.size, INT_CHUNK):  # bounded buffers (up to 65 symbols a value)
            sym, idx = adaptive.int_symbols(v[a : a + INT_CHUNK], s[a : a + INT_CHUNK], states)
            if sym.size:
                self.encoder.encode(sym, idx, adaptive.bank())
        return v


class _DecodeSink(Sink):
    decoding = True

    def __init__(self, data: bytes) -> None:
        self.decoder = rangecoder.RangeDecoder(data)

    def code(self, indexes, tables, values=None):
        return self.decoder.decode(np.asarray(indexes).reshape(-1), tables)

    def code_ints(self, sets, states, values=None):
        return adaptive.decode_ints(self.decoder, sets, states)


class _CountSink(Sink):
    def __init__(self) -> None:
        self.bits = 0.0

    def code(self, indexes, tables, values=None):
        v = self._values(values, indexes)
        self.bits += information_bits(v, np.asarray(indexes).reshape(-1), tables)
        return v

    def code_ints(self, sets, states, values=None):
        v = self._values(values, sets)
        s = np.asarray(sets).reshape(-1)
        for a in range(0, v.size, INT_CHUNK):
            self.bits += adaptive.ideal_int_bits(v[a : a + INT_CHUNK], s[a : a + INT_CHUNK], states)
        return v


class Sinks:
    """A sink per stream name, made on first use (so streams appear in the order written)."""

    decoding = False

    def __init__(self) -> None:
        self._sinks: dict[str, Sink] = {}

    def _make(self, name: str) -> Sink:
        raise NotImplementedError

    def __getitem__(self, name: str) -> Sink:
        if name not in self._sinks:
            self._sinks[name] = self._make(name)
        return self._sinks[name]


class EncoderSinks(Sinks):
    def _make(self, name: str) -> Sink:
        return _EncodeSink()

    def finish(self) -> dict[str, bytes]:
        """The coded streams, in the order they were first written."""
        return {name: sink.encoder.finish() for name, sink in self._sinks.items()}


class DecoderSinks(Sinks):
    decoding = True

    def __init__(self, streams: Mapping[str, bytes]) -> None:
        super().__init__()
        self._streams = streams

    def _make(self, name: str) -> Sink:
        if name not in self._streams:
            raise CodecError(f"missing stream {name!r}")
        return _DecodeSink(self._streams[name])


class CounterSinks(Sinks):
    def _make(self, name: str) -> Sink:
        return _CountSink()

    @property
    def bits(self) -> dict[str, float]:
        """Ideal code length of each stream, in bits."""
        return {name: sink.bits for name, sink in self._sinks.items()}
