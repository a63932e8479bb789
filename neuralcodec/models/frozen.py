"""The frozen-weights protocol: one freeze / save / load / sha256 for every learned codec.

A trained network is *frozen* once into everything the coder needs, and only that is shipped::

    trained nn.Module --freeze--> Frozen(model, tables, nets, ints, meta) --save--> .safetensors
    .safetensors --load--> Frozen subclass of the file's model family (config["kind"])

* ``tables``: integer ``CodingTables`` by name (``y``, ``z``, ...), the only thing the range
  coder sees of a distribution; never re-derived from floats by the decoder;
* ``nets``: exact integer twins (``FixedPointNet``) of the float sub-networks that pick a CDF,
  by a short file name (``hs``, ``ch0``, ...) that maps to a module path (``h_s``,
  ``channel_ctx.0``, ...); the float weights of those modules are not stored, they are rebuilt
  from the twins so the float and integer paths agree;
* ``ints``: other integer arrays (``zinv``: the hyper-latent inverse gains in fixed point);
* ``model``: the float transforms (``g_a``, ``h_a`` for encoding, ``g_s`` for decoding).

One file layout for all (safetensors)::

    model.<state_dict key>   float parameters (float16 from HALF_MIN_ELEMENTS elements up)
    frozen.<table>.*         CodingTables
    frozen.<net>.*           FixedPointNet
    frozen.<int>             int64 arrays
    metadata                 config (JSON, its "kind" names the family), meta (JSON)

A model family is a ``Frozen`` subclass registered with ``@family`` for its config kinds; it says
which modules have twins and which tables and integer arrays its coder needs. Families live next
to their models (``FAMILY_MODULES``) and are imported on demand.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy_bytes
from safetensors.numpy import save_file as save_numpy
from torch import nn

from ..entropy.tables import CodingTables
from .fixedpoint import ACT_BITS, FixedPointError, FixedPointNet
from .hyperprior import GainUnits, HyperpriorConfig, HyperpriorModel
from .packing import PackingError, canonical_bytes, canonical_sha256, is_packed, metadata_of


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or not what the codec expects."""


# Float tensors with at least this many elements are stored as float16 (the transforms' convolution
# weights); gains, GDN and density parameters stay float32.
HALF_MIN_ELEMENTS = 4096


@dataclass
class Frozen:
    """A frozen model: float transforms plus the integer parts its coder needs (see module doc)."""

    model: nn.Module
    tables: dict[str, CodingTables]
    nets: dict[str, FixedPointNet] = field(default_factory=dict)
    ints: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    kinds: ClassVar[tuple[str, ...]] = ()
    config_class: ClassVar[type]  # has from_dict / to_dict
    model_class: ClassVar[type[nn.Module]]  # built from a config

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def kind(self) -> str:
        return self.config.kind

    # -- what a family defines --------------------------------------------------------------
    @classmethod
    def config_from_dict(cls, d: dict) -> Any:
        return cls.config_class.from_dict(d)

    @classmethod
    def build(cls, config: Any) -> nn.Module:
        return cls.model_class(config)

    @classmethod
    def twin_modules(cls, config: Any) -> dict[str, str]:
        """``{file name: module path}`` of the sub-networks frozen into ``FixedPointNet``s."""
        return {}

    @classmethod
    def load_twin(cls, name: str, arrays: dict[str, np.ndarray], prefix: str) -> Any:
        """The stored twin ``name`` (a ``FixedPointNet`` unless the family says otherwise)."""
        return FixedPointNet.from_arrays(arrays, prefix)

    @classmethod
    def integer_parts(cls, model: nn.Module) -> tuple[dict[str, CodingTables], dict[str, Any]]:
        """(tables, integer arrays) of a trained ``model`` in eval mode."""
        raise NotImplementedError

    @classmethod
    def part_names(cls, config: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(table names, integer-array names) a file of this family must hold."""
        raise NotImplementedError


_FAMILIES: dict[str, type[Frozen]] = {}

# Modules that register families when imported (this one registers the hyperprior family).
FAMILY_MODULES = (
    "neuralcodec.models.elic",
    "neuralcodec.models.elic_int",
    "neuralcodec.models.wavelet",
    "neuralcodec.models.mlic",
)


def family(cls: type[Frozen]) -> type[Frozen]:
    """Class decorator: ``cls`` freezes and loads models whose config kind is in ``cls.kinds``."""
    for kind in cls.kinds:
        if _FAMILIES.get(kind, cls) is not cls:
            raise RuntimeError(f"two frozen families for kind {kind!r}")
        _FAMILIES[kind] = cls
    return cls


def family_for(kind: str) -> type[Frozen]:
    if kind not in _FAMILIES:
        for module in FAMILY_MODULES:
            importlib.import_module(module)
    try:
        return _FAMILIES[kind]
    except KeyError:
        raise WeightsError(f"no model family of kind {kind!r}") from None


def fixed_inverse_gains(gains: GainUnits) -> np.ndarray:
    """int64 [Q, C]: the learned inverse gains at scale 2^ACT_BITS, input of a fixed-point net."""
    inverse = torch.exp(gains.log_inverse.detach().double())
    return torch.round(inverse * 2**ACT_BITS).numpy().astype(np.int64)


def freeze(model: nn.Module, meta: dict | None = None) -> Frozen:
    """Freeze a trained model of any registered family (the model is put in eval mode)."""
    cls = family_for(model.config.kind)
    model = model.eval()
    with torch.no_grad():
        tables, ints = cls.integer_parts(model)
        nets = {
            name: FixedPointNet.from_sequential(model.get_submodule(path))
            for name, path in cls.twin_modules(model.config).items()
        }
    ints = {k: np.asarray(v, dtype=np.int64) for k, v in ints.items()}
    return cls(model, tables, nets, ints, dict(meta or {}))


# ----------------------------------------------------------------------------- file


def _twins_by_module(frozen: Frozen) -> dict[str, FixedPointNet]:
    paths = type(frozen).twin_modules(frozen.config)
    return {paths[name]: net for name, net in frozen.nets.items()}


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


def save(frozen: Frozen, path: Path) -> str:
    """Write one safetensors file (atomically: temporary file, then rename); returns its sha256."""
    arrays = float_arrays(frozen.model, _twins_by_module(frozen))
    for name, tables in frozen.tables.items():
        arrays.update(tables.to_arrays(f"frozen.{name}."))
    for name, net in frozen.nets.items():
        arrays.update(net.to_arrays(f"frozen.{name}."))
    arrays.update({f"frozen.{name}": a for name, a in frozen.ints.items()})
    metadata = {"config": json.dumps(frozen.config.to_dict()), "meta": json.dumps(frozen.meta)}
    return write_weights_file(path, arrays, metadata)


def write_weights_file(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """One safetensors file, atomically (temporary file, then rename), with sorted metadata so
    the same content gives the same bytes; returns its sha256."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_numpy({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=metadata)
    _sort_metadata(tmp)
    tmp.chmod(0o644)  # the writer creates owner-only files; weights are for every user
    tmp.replace(path)
    return sha256_file(path)


# ----------------------------------------------------------------------------- twin files
# A twin file holds only what a codec adds to another shipped file (its "base"), which it names
# and pins by sha256: mbt-mean-int's integer synthesis (compress/hyperprior.py), mlic's own
# networks (models/mlic.py).


def save_twin(
    path: Path, arrays: dict[str, np.ndarray], config: dict, meta: dict, base: Path
) -> str:
    """Write a twin of ``base`` (``config`` gains the base's name and sha256); its sha256."""
    base = Path(base)
    config = {**config, "base": base.name, "base_sha256": sha256_file(base)}
    metadata = {
        "config": json.dumps(config, sort_keys=True),
        "meta": json.dumps(meta, sort_keys=True),
    }
    return write_weights_file(path, arrays, metadata)


def load_twin_base(path: Path, config: dict, kinds: tuple[str, ...]) -> Frozen:
    """The base a twin file at ``path`` names: beside it, with the pinned sha256, of ``kinds``;
    ``WeightsError`` (one line) otherwise."""
    path = Path(path)
    base_name = config.get("base")
    if not isinstance(base_name, str) or Path(base_name).name != base_name:
        raise WeightsError(f"{path.name} names no valid base weights file")
    base_path = path.with_name(base_name)
    if not base_path.is_file():
        raise WeightsError(f"{path.name} completes {base_name}, which is not beside it")
    if sha256_file(base_path) != config.get("base_sha256"):
        raise WeightsError(f"{path.name} was made for other {base_name} weights")
    return load(base_path, kinds=kinds)


def _sort_metadata(path: Path) -> None:
    """Rewrite the header's metadata with sorted keys, so that saving the same model twice gives
    the same bytes (the safetensors writer orders metadata keys arbitrarily)."""
    with open(path, "r+b") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = f.read(size)
        doc = json.loads(header)
        old = json.dumps({"__metadata__": doc["__metadata__"]}, separators=(",", ":"))[1:-1]
        new = json.dumps(
            {"__metadata__": dict(sorted(doc["__metadata__"].items()))}, separators=(",", ":")
        )[1:-1]
        start = header.find(old.encode())
        if start < 0 or len(old) != len(new):
            return  # another serialisation than expected: leave the file as written
        f.seek(8 + start)
        f.write(new.encode())


def sha256_file(path: Path) -> str:
    """sha256 of a weights file's canonical bytes: the file itself, or what a packed file
    unpacks to (``models/packing.py``), so packing never changes a digest."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        head += f.read(min(n, 1 << 26))
    if is_packed(head):
        try:
            return canonical_sha256(path)
        except PackingError as exc:
            raise WeightsError(f"cannot read weights {path}: {exc}") from None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_weights_file(path: Path) -> tuple[dict[str, np.ndarray], dict, dict]:
    """(arrays, config dict, meta) of a weights file (packed or not); ``WeightsError`` with one
    line if unreadable."""
    path = Path(path)
    try:
        raw = canonical_bytes(path)  # a packed file's original bytes (PackingError: ValueError)
        metadata = metadata_of(raw)
        arrays = load_numpy_bytes(raw)
        config = json.loads(metadata["config"])
        meta = json.loads(metadata.get("meta", "{}"))
        if not isinstance(config, dict) or not isinstance(meta, dict):
            raise ValueError("config and meta must be JSON objects")
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} not found") from None
    except (OSError, KeyError, TypeError, ValueError, SafetensorError) as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    return arrays, config, meta


def load(path: Path, kinds: tuple[str, ...] | None = None) -> Frozen:
    """Inverse of ``save``, for any registered family; ``kinds`` restricts the accepted ones.

    Raises ``WeightsError`` (one line) for anything unreadable, foreign or inconsistent.
    """
    arrays, config_dict, meta = read_weights_file(path)
    kind = config_dict.get("kind", "mean-scale")
    if kinds is not None and kind not in kinds:
        raise WeightsError(f"{Path(path).name} holds a {kind!r} model, not {' or '.join(kinds)}")
    cls = family_for(kind)
    try:
        config = cls.config_from_dict(config_dict)
        model = cls.build(config)
        table_names, int_names = cls.part_names(config)
        nets = {
            name: cls.load_twin(name, arrays, f"frozen.{name}.")
            for name in cls.twin_modules(config)
        }
        frozen = cls(
            model=model,
            tables={t: CodingTables.from_arrays(arrays, f"frozen.{t}.") for t in table_names},
            nets=nets,
            ints={i: np.asarray(arrays[f"frozen.{i}"], dtype=np.int64) for i in int_names},
            meta=meta,
        )
        restore_model(model, arrays, _twins_by_module(frozen))
    except (RuntimeError, KeyError, TypeError, ValueError, FixedPointError) as exc:
        raise WeightsError(
            f"weights {path} do not match their {kind} architecture: {exc}"
        ) from None
    model.eval()
    return frozen


# ----------------------------------------------------------------------------- hyperprior family


class HyperParts:
    """Named access to the parts every hyperprior-style family has (``None`` where absent)."""

    tables: dict[str, CodingTables]
    nets: dict[str, FixedPointNet]
    ints: dict[str, np.ndarray]

    @property
    def y_tables(self) -> CodingTables:
        return self.tables["y"]

    @property
    def z_tables(self) -> CodingTables | None:
        return self.tables.get("z")

    @property
    def hs_fixed(self) -> FixedPointNet | None:
        """The exact hyper-synthesis."""
        return self.nets.get("hs")

    @property
    def z_inverse_fixed(self) -> np.ndarray | None:
        """int64 [Q, N]: exp(log_inverse) of the hyper gains at scale 2^ACT_BITS."""
        return self.ints.get("zinv")

    @staticmethod
    def hyper_integer_parts(model: nn.Module) -> tuple[dict, dict]:
        """Tables ``y`` (Gaussian conditional), ``z`` (factorized) and ``zinv`` of ``model``."""
        tables = {"y": model.y_conditional.freeze(), "z": model.z_density.freeze()}
        return tables, {"zinv": fixed_inverse_gains(model.z_gain)}


@family
class FrozenHyperprior(HyperParts, Frozen):
    """The hyperprior family (factorized, scale, mean-scale): tables ``y`` (+ ``z``), the
    hyper-synthesis twin ``hs`` and the inverse hyper gains ``zinv``."""

    kinds = ("factorized", "scale", "mean-scale")
    config_class, model_class = HyperpriorConfig, HyperpriorModel

    @classmethod
    def twin_modules(cls, config: HyperpriorConfig) -> dict[str, str]:
        return {} if config.kind == "factorized" else {"hs": "h_s"}

    @classmethod
    def part_names(cls, config: HyperpriorConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (("y",), ()) if config.kind == "factorized" else (("y", "z"), ("zinv",))

    @classmethod
    def integer_parts(cls, model: HyperpriorModel):
        if model.config.kind == "factorized":
            return {"y": model.y_density.freeze()}, {}
        return cls.hyper_integer_parts(model)
