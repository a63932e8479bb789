"""Modality adapters: reading, preparing, restoring and writing the user's data (see ``base``)."""

from neuralcodec.modalities.base import (
    RESERVED_STREAM_PREFIX,
    ModalityAdapter,
    Prepared,
    adapter,
    adapter_for,
    adapter_for_path,
)

__all__ = [
    "RESERVED_STREAM_PREFIX",
    "ModalityAdapter",
    "Prepared",
    "adapter",
    "adapter_for",
    "adapter_for_path",
]
