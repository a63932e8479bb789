"""Frozen hyperprior models: everything the coder needs, built once and stored with the weights.

``freeze(model)`` turns a trained ``HyperpriorModel`` into a ``FrozenHyperprior``:

* the float transforms (``g_a``, ``h_a`` for encoding, ``g_s`` for decoding) and gains;
* integer coding tables of the hyper-latent density and of the conditional (``CodingTables``);
* the hyper-synthesis as an exact integer network (``FixedPointNet``) and the hyper-latent
  inverse gains in fixed point, so the CDF chosen for every symbol is the same on every machine.

``save``/``load`` use one safetensors file. The decoder never rebuilds tables from floats.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy

from ..entropy.tables import CodingTables
from .fixedpoint import ACT_BITS, FixedPointNet
from .hyperprior import GainUnits, HyperpriorConfig, HyperpriorModel


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or not what the codec expects."""


@dataclass
class FrozenHyperprior:
    model: HyperpriorModel  # float transforms (training-side parameters, eval mode)
    y_tables: CodingTables
    z_tables: CodingTables | None  # None for the factorized kind
    hs_fixed: FixedPointNet | None
    z_inverse_fixed: np.ndarray | None  # int64 [Q, N]: exp(log_inverse) at scale 2^ACT_BITS
    meta: dict

    @property
    def config(self) -> HyperpriorConfig:
        return self.model.config


def fixed_inverse_gains(gains: GainUnits) -> np.ndarray:
    """int64 [Q, C]: the learned inverse gains at scale 2^ACT_BITS, input of a fixed-point net."""
    inverse = torch.exp(gains.log_inverse.detach().double())
    return torch.round(inverse * 2**ACT_BITS).numpy().astype(np.int64)


def freeze(model: HyperpriorModel, meta: dict | None = None) -> FrozenHyperprior:
    model = model.eval()
    with torch.no_grad():
        if model.config.kind == "factorized":
            return FrozenHyperprior(model, model.y_density.freeze(), None, None, None, meta or {})
        return FrozenHyperprior(
            model=model,
            y_tables=model.y_conditional.freeze(),
            z_tables=model.z_density.freeze(),
            hs_fixed=FixedPointNet.from_sequential(model.h_s),
            z_inverse_fixed=fixed_inverse_gains(model.z_gain),
            meta=dict(meta or {}),
        )


def save(frozen: FrozenHyperprior, path: Path) -> str:
    """Write one safetensors file; returns its sha256."""
    arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in frozen.model.state_dict().items()}
    arrays.update(frozen.y_tables.to_arrays("frozen.y."))
    if frozen.z_tables is not None:
        arrays.update(frozen.z_tables.to_arrays("frozen.z."))
        arrays.update(frozen.hs_fixed.to_arrays("frozen.hs."))
        arrays["frozen.zinv"] = frozen.z_inverse_fixed
    metadata = {"config": json.dumps(frozen.config.to_dict()), "meta": json.dumps(frozen.meta)}
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_numpy({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)
    return sha256_file(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_weights_file(path: Path, config_from_dict) -> tuple[dict[str, np.ndarray], object, dict]:
    """(arrays, config, meta) of a weights file; ``WeightsError`` with one line if unreadable."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        arrays = load_numpy(str(path))
        config = config_from_dict(json.loads(metadata["config"]))
        meta = json.loads(metadata.get("meta", "{}"))
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} not found") from None
    except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    return arrays, config, meta


def load(path: Path) -> FrozenHyperprior:
    arrays, config, meta = read_weights_file(path, HyperpriorConfig.from_dict)
    model = HyperpriorModel(config)
    state = {
        k[len("model.") :]: torch.from_numpy(v.copy())
        for k, v in arrays.items()
        if k.startswith("model.")
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"weights {path} do not match their architecture: {exc}") from None
    model.eval()
    if config.kind == "factorized":
        return FrozenHyperprior(
            model, CodingTables.from_arrays(arrays, "frozen.y."), None, None, None, meta
        )
    return FrozenHyperprior(
        model=model,
        y_tables=CodingTables.from_arrays(arrays, "frozen.y."),
        z_tables=CodingTables.from_arrays(arrays, "frozen.z."),
        hs_fixed=FixedPointNet.from_arrays(arrays, "frozen.hs."),
        z_inverse_fixed=np.asarray(arrays["frozen.zinv"], dtype=np.int64),
        meta=meta,
    )
