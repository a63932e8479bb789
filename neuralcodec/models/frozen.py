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
from .fixedpoint import ACT_BITS, FixedPointError, FixedPointNet
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


# Float tensors with at least this many elements are stored as float16 (the transforms' convolution
# weights); gains, GDN and density parameters stay float32.
HALF_MIN_ELEMENTS = 4096


def float_arrays(model: torch.nn.Module, twins: dict[str, FixedPointNet]) -> dict[str, np.ndarray]:
    """``model.*`` arrays of a weights file: the float parameters the coder runs in float.

    Sub-networks named in ``twins`` are left out: their exact integer form is stored instead and
    ``restore_model`` rebuilds them from it. Large tensors are stored as float16; the encoder and
    the synthesis run with exactly these values, so nothing depends on the dropped bits.
    """
    skip = tuple(f"{name}." for name in twins)
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith(skip):
            continue
        a = value.detach().cpu().numpy()
        if a.dtype == np.float32 and a.size >= HALF_MIN_ELEMENTS:
            a = a.astype(np.float16)
        out[f"model.{key}"] = a
    return out


def restore_model(
    model: torch.nn.Module, arrays: dict[str, np.ndarray], twins: dict[str, FixedPointNet]
) -> None:
    """Load ``float_arrays`` output into ``model``; ``twins`` rebuild the networks left out.

    Raises ``RuntimeError`` (missing or mismatched tensors) or ``FixedPointError``.
    """
    skip = tuple(f"{name}." for name in twins)
    state = {
        k[len("model.") :]: torch.from_numpy(np.asarray(v, dtype=np.float32))
        if v.dtype == np.float16
        else torch.from_numpy(v.copy())
        for k, v in arrays.items()
        if k.startswith("model.")
    }
    missing = [k for k in model.state_dict() if k not in state and not k.startswith(skip)]
    if missing:
        raise RuntimeError(f"missing tensors {', '.join(missing[:3])}")
    model.load_state_dict(state, strict=False)
    for name, net in twins.items():
        net.load_into(model.get_submodule(name))


def save(frozen: FrozenHyperprior, path: Path) -> str:
    """Write one safetensors file; returns its sha256."""
    twins = {"h_s": frozen.hs_fixed} if frozen.hs_fixed is not None else {}
    arrays = float_arrays(frozen.model, twins)
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
    try:
        if config.kind == "factorized":
            restore_model(model, arrays, {})
            return FrozenHyperprior(
                model.eval(), CodingTables.from_arrays(arrays, "frozen.y."), None, None, None, meta
            )
        hs_fixed = FixedPointNet.from_arrays(arrays, "frozen.hs.")
        restore_model(model, arrays, {"h_s": hs_fixed})
        return FrozenHyperprior(
            model=model.eval(),
            y_tables=CodingTables.from_arrays(arrays, "frozen.y."),
            z_tables=CodingTables.from_arrays(arrays, "frozen.z."),
            hs_fixed=hs_fixed,
            z_inverse_fixed=np.asarray(arrays["frozen.zinv"], dtype=np.int64),
            meta=meta,
        )
    except (RuntimeError, KeyError, ValueError, FixedPointError) as exc:
        raise WeightsError(f"weights {path} do not match their architecture: {exc}") from None
