"""Multi-reference entropy model (MLIC-style, Jiang et al. 2023) on ``elic``'s transforms.

Same transforms, gains, hyperprior, uneven channel slices and two-pass checkerboard as
``models/elic.py``; what is new is a **global context** per slice, computed by linear attention
that is exact in integers. For slice ``k`` (``c`` channels) and its *reference* ``r`` (the hyper
features for slice 0, the decoded previous slice ŷ[k-1] otherwise)::

    φ(t) = clamp(floor(16 t), 0, 255) + 1           integer feature map, values 1..256
    q, κ = φ(qk[k](r))      (1x1 conv + ReLU, D = ATTN_DIM features each, every position)

    inter (k >= 1, both passes):  v = vi[k](ŷ[k-1])                 every position j
    intra (non-anchor pass):      v = va[k](ŷ[k] at anchors)        anchor positions j only

    g(p) = Σ_j (q(p)·κ(j)) v(j) / Σ_j q(p)·κ(j)
         = q(p)ᵀ KV / q(p)ᵀ Ks,   KV = Σ_j κ(j) v(j)ᵀ (D x c),  Ks = Σ_j κ(j)

    (scale, mean)[k] = hyper[k] + param_agg[k](cat(hyper, ch, sp, g_inter, g_intra))

``g_intra`` is MLIC's intra-slice global context: the attention map comes from already decoded
latents (the previous slice, or the hyper features), the values from the current slice's decoded
anchors, so a non-anchor position gathers from every anchor of the image, not only from its
5x5 neighbourhood. ``g_inter`` is the inter-slice one (self-attention over ŷ[k-1]). Linear
attention costs O(positions x D x c), no position x position map.

**Exactness.** In the coder, ``qk``/``vi``/``va`` are ``FixedPointNet``s (integers at 2^10);
``q, κ`` are the integers 1..256 above, ``v`` integers at 2^10 clamped to +-(2^15 - 1). KV and Ks
are int64 sums (|κ v| < 2^23, so 2^40 for a million positions), the query products as well
(< 2^56), and the quotient is a rounding integer division ``floor((2 n + d) / 2 d)``: no float
touches the value. The denominator is at least D (every feature is >= 1). The kernels doing
this are ``kernels.linear_attention_exact`` (PyTorch int64 reference + Triton).

**Weights.** ``weights/mlic.safetensors`` holds only the aggregations and the attention
projections and pins ``elic-int.safetensors`` (analysis, tables, hyper and context networks,
integer synthesis) by sha256; ``load`` joins the two (``docs/mlic.md``).

**Warm start.** Every module that exists in ``elic`` is copied from it; the parameter
aggregations get extra input columns for ``g_inter`` / ``g_intra`` that start at zero, so the
model at step 0 *is* ``elic`` and its rate is ``elic``'s; the rate gain comes from training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..entropy.models import quantize_noise, quantize_ste
from . import frozen as frozen_protocol
from .elic import (
    ACT_SCALE,
    HAT_LIMIT,
    ElicConfig,
    ElicModel,
    FrozenElic,
    _fixed_hat,
    checkerboard_masks,
    split_params,
)
from .fixedpoint import ACT_BITS, FixedPointError, FixedPointNet
from .frozen import WeightsError, family

KIND = "mlic"
ATTN_DIM = 16
FEATURE_FRAC_BITS = 4  # φ keeps 4 fractional bits of the ReLU output
FEATURE_MAX = 255  # φ in 1 .. FEATURE_MAX + 1
VALUE_LIMIT = 2**15 - 1  # attention values at 2^ACT_BITS, clamped (|v| < 32)


@dataclass
class MlicConfig(ElicConfig):
    kind: str = KIND
    attn_dim: int = ATTN_DIM

    def __post_init__(self) -> None:
        kind, self.kind = self.kind, "elic"
        super().__post_init__()
        if kind != KIND:
            raise ValueError(f"MlicConfig.kind must be {KIND!r}, got {kind!r}")
        self.kind = kind
        if self.attn_dim <= 0:
            raise ValueError("attn_dim must be positive")

    @classmethod
    def from_dict(cls, d: dict) -> MlicConfig:
        d = dict(d)
        d["groups"] = tuple(d.get("groups", ()))
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)


def feature_map(t: torch.Tensor) -> torch.Tensor:
    """φ: float features -> 1..256, rounding down with a straight-through gradient."""
    s = (t * 2.0**FEATURE_FRAC_BITS).clamp(0, FEATURE_MAX)
    return s + (torch.floor(s) - s).detach() + 1


def feature_map_fixed(t_fx: torch.Tensor) -> torch.Tensor:
    """φ on fixed-point features (float64 integers at 2^ACT_BITS) -> int64 1..256 (exact)."""
    s = torch.floor(t_fx * 2.0 ** (FEATURE_FRAC_BITS - ACT_BITS)).clamp_(0, FEATURE_MAX)
    return s.to(torch.int64) + 1


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Float twin of the exact kernel: (B, P, D), (B, N, D), (B, N, C) -> (B, P, C)."""
    kv = k.transpose(1, 2) @ v  # (B, D, C)
    ks = k.sum(1)  # (B, D)
    return (q @ kv) / (q @ ks[:, :, None])


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H W, C)."""
    return t.flatten(2).transpose(1, 2)


def qk_projection(cin: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, 2 * dim, 1), nn.ReLU(inplace=True))


def value_projection(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1))


class MlicModel(ElicModel):
    """``ElicModel`` + linear-attention global contexts (inter- and intra-slice)."""

    # Context inputs carry no gradient to the parameters that produced them (straight-through
    # rounding around the mean: d ŷ / d mean = 0 exactly), only to y. With y fixed (training on
    # cached latents) they can be detached: the result is the same and the frozen context
    # networks then need no backward pass.
    detach_contexts = False
    # Training rate on the rounded values the coder codes (straight-through for the mean)
    # instead of uniform noise: with fixed transforms the coded rate is the whole objective.
    rounded_rate = False

    def __init__(self, config: MlicConfig):
        super().__init__(config)
        m, d, groups = config.m, config.attn_dim, config.groups
        refs = [2 * m, *groups[:-1]]  # slice 0 attends over the hyper features
        self.qk = nn.ModuleList(qk_projection(r, d) for r in refs)
        self.v_inter = nn.ModuleList(
            value_projection(groups[k - 1], groups[k]) for k in range(1, len(groups))
        )
        self.v_intra = nn.ModuleList(value_projection(c, c) for c in groups)
        self.param_agg = nn.ModuleList(
            _agg(2 * m + (4 if k else 2) * c + (2 if k else 1) * c, 2 * c, config.agg_hidden)
            for k, c in enumerate(groups)
        )

    # -- the global contexts (float, training) ------------------------------------------------
    def _features(self, k: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, kk = feature_map(self.qk[k](ref)).chunk(2, dim=1)
        return _flat(q), _flat(kk)

    def global_inter(self, k: int, q, kk, prev: torch.Tensor) -> torch.Tensor:
        """(B, c, H W): attention of every position over every position of ŷ[k-1]."""
        v = self.v_inter[k - 1](prev).clamp(-VALUE_LIMIT / ACT_SCALE, VALUE_LIMIT / ACT_SCALE)
        return linear_attention(q, kk, _flat(v)).transpose(1, 2)

    def global_intra(self, k: int, q_sel, kk_anchor, hat_anchor: torch.Tensor) -> torch.Tensor:
        """(B, c, n): attention of the positions of ``q_sel`` over the anchors (B, c, n_a)."""
        v = pointwise(self.v_intra[k], hat_anchor)
        v = v.clamp(-VALUE_LIMIT / ACT_SCALE, VALUE_LIMIT / ACT_SCALE)
        return linear_attention(q_sel, kk_anchor, v.transpose(1, 2)).transpose(1, 2)

    def latent_forward(
        self, y: torch.Tensor, hyper: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``ElicModel.latent_forward``, with the global contexts; each pass's parameters are
        computed at that pass's positions only (gathered), as the coder does."""
        b, _, h, w = y.shape
        anchor = checkerboard_masks(h, w)[0].reshape(-1).bool().to(y.device)
        ia, ib = anchor.nonzero().squeeze(1), (~anchor).nonzero().squeeze(1)

        def at(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], h * w)[:, :, idx]

        def scatter(a: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            full = a.new_zeros(b, a.shape[1], h * w).index_copy(2, ia, a)
            return full if n is None else full.index_copy(2, ib, n)

        hyper_ab = (at(hyper, ia), at(hyper, ib))
        hats, liks, outs = [], [], []
        for k, (s0, s1) in enumerate(self.config.group_slices()):
            c = s1 - s0
            y_k = y[:, s0:s1]
            prev = hats[-1].clamp(-HAT_LIMIT, HAT_LIMIT) if k else None
            q, kk = self._features(k, hyper if k == 0 else prev)
            extra = [[], []]  # per pass: channel context
            if k:
                ch = self.channel_ctx[k - 1](torch.cat(hats, 1).clamp(-HAT_LIMIT, HAT_LIMIT))
                extra = [[at(ch, ia)], [at(ch, ib)]]
            inter = [[], []]
            if k:
                g = self.global_inter(k, q, kk, prev)
                inter = [[g[:, :, ia]], [g[:, :, ib]]]
            y_a, y_b = at(y_k, ia), at(y_k, ib)
            zero_sp = y.new_zeros(b, 2 * c, ia.numel())
            zero_g = y.new_zeros(b, c, ia.numel())
            s_a, m_a = self._params(k, [hyper_ab[0], *extra[0], zero_sp, *inter[0], zero_g])
            hat_a = quantize_ste(y_a - m_a) + m_a
            hat_a_in = hat_a.clamp(-HAT_LIMIT, HAT_LIMIT)
            if self.detach_contexts:
                hat_a_in = hat_a_in.detach()
            sp = at(self.spatial_ctx[k](scatter(hat_a_in, None).reshape(b, c, h, w)), ib)
            g_intra = self.global_intra(k, q[:, ib], kk[:, ia], hat_a_in)
            s_b, m_b = self._params(k, [hyper_ab[1], *extra[1], sp, *inter[1], g_intra])
            hat_b = quantize_ste(y_b - m_b) + m_b
            lik_a = self.y_conditional.likelihood(self._rate_values(y_a, m_a), s_a, m_a)
            lik_b = self.y_conditional.likelihood(self._rate_values(y_b, m_b), s_b, m_b)
            liks.append(scatter(lik_a, lik_b).reshape(b, c, h, w))
            hat = scatter(hat_a, hat_b).reshape(b, c, h, w)
            outs.append(hat)
            hats.append(hat.detach() if self.detach_contexts else hat)
        return torch.cat(outs, 1), torch.cat(liks, 1)

    def _params(self, k: int, parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) of slice ``k`` at gathered positions: parts (B, C_i, n), hyper first."""
        s0, s1 = self.config.group_slices()[k]
        delta = pointwise(self.param_agg[k], torch.cat(parts, dim=1))
        return split_params(parts[0], delta, self.config.m, s0, s1)

    def _rate_values(self, y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        if self.training and self.rounded_rate:
            return quantize_ste(y - means) + means
        if self.training:
            return quantize_noise(y)
        return torch.round(y - means) + means

    # -- warm start ------------------------------------------------------------------------
    def load_elic(self, elic: ElicModel) -> int:
        """Copy every tensor of ``elic`` whose place exists here; the aggregations' new input
        columns (the global contexts) stay zero, so this model then codes exactly as ``elic``.
        Returns the number of tensors copied."""
        own = self.state_dict()
        copied = 0
        with torch.no_grad():
            for name, value in elic.state_dict().items():
                if name not in own:
                    continue
                target = own[name]
                if target.shape == value.shape:
                    target.copy_(value)
                elif name.startswith("param_agg.") and name.endswith(".0.weight"):
                    target.zero_()
                    target[:, : value.shape[1]] = value
                else:
                    raise ValueError(f"{name}: {tuple(value.shape)} cannot warm-start "
                                     f"{tuple(target.shape)}")  # fmt: skip
                copied += 1
        return copied


def pointwise(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A stack of 1x1 convolutions / ReLUs on gathered positions (B, C, n), as matrix products
    (PyTorch's CPU convolution takes a slow path for (n, 1)-shaped maps)."""
    for m in seq:
        if isinstance(m, nn.Conv2d):
            x = torch.matmul(m.weight[:, :, 0, 0], x) + m.bias[:, None]
        else:
            x = torch.relu(x)
    return x


def _agg(cin: int, cout: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, cout, 1),
    )  # fmt: skip


# --------------------------------------------------------------------------- frozen (coding)

BASE_KIND = "elic-int"


@family
class FrozenMlic(FrozenElic):
    """What the ``mlic`` coder needs: ``elic-int``'s frozen model (its file, pinned by sha256)
    completed by this model's own integer networks.

    From the base: the float analysis, tables ``y`` / ``z``, ``zinv``, the integer
    hyper-synthesis ``hs``, channel contexts ``ch<k>``, spatial contexts ``sp<k>`` and the
    integer synthesis ``gs``. Own (``weights/mlic.safetensors``): the aggregations ``agg<k>``
    (retrained, with the global-context columns), the attention projections ``qk<k>``,
    ``vi<k>`` (inter, slices 1.., stored ``vi0..``) and ``va<k>`` (intra), as ``FixedPointNet``s.
    """

    kinds = (KIND,)
    config_class, model_class = MlicConfig, MlicModel

    @classmethod
    def own_twins(cls, config: MlicConfig) -> dict[str, str]:
        groups = len(config.groups)
        twins = {f"agg{i}": f"param_agg.{i}" for i in range(groups)}
        twins.update({f"qk{i}": f"qk.{i}" for i in range(groups)})
        twins.update({f"vi{i}": f"v_inter.{i}" for i in range(groups - 1)})
        twins.update({f"va{i}": f"v_intra.{i}" for i in range(groups)})
        return twins

    @property
    def synthesis_int(self):
        return self.nets["gs"]

    # -- exact pieces ------------------------------------------------------------------------
    def features_fixed(self, k: int, ref_fx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, κ) of slice ``k`` as int64 (B, H W, D), from its reference at 2^ACT_BITS."""
        f = feature_map_fixed(self.nets[f"qk{k}"](_fixed_hat(ref_fx)))
        q, kk = f.chunk(2, dim=1)
        return _flat(q).contiguous(), _flat(kk).contiguous()

    @staticmethod
    def values_fixed(net: FixedPointNet, x_fx: torch.Tensor) -> torch.Tensor:
        """(B, C, ...) float64 at 2^ACT_BITS -> attention values, int64 (B, n, C)."""
        v = net(_fixed_hat(x_fx)).clamp_(-VALUE_LIMIT, VALUE_LIMIT).to(torch.int64)
        return v.flatten(2).transpose(1, 2).contiguous()

    def inter_fixed(self, k: int, q, kk, prev_fx: torch.Tensor) -> torch.Tensor:
        """Inter-slice global context of slice ``k >= 1``: float64 (B, c, H W) at 2^ACT_BITS."""
        from ..kernels import linear_attention_exact

        v = self.values_fixed(self.nets[f"vi{k - 1}"], prev_fx)
        return linear_attention_exact(q, kk, v).transpose(1, 2).double()

    def intra_fixed(self, k: int, q_sel, kk_anchor, anchor_vals_fx: torch.Tensor) -> torch.Tensor:
        """Intra-slice global context at the positions of ``q_sel`` (B, n, D) from the anchors'
        ŷ (B, c, n_a) and their κ (B, n_a, D): float64 (B, c, n) at 2^ACT_BITS."""
        from ..kernels import linear_attention_exact

        v = self.values_fixed(self.nets[f"va{k}"], anchor_vals_fx[..., None])
        return linear_attention_exact(q_sel, kk_anchor, v).transpose(1, 2).double()

    def params_at(self, k: int, parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) of slice ``k`` from gathered inputs ``parts`` (each (B, C_i, n),
        hyper first) through the exact aggregation: (B, c, n) each, at 2^ACT_BITS."""
        from ..kernels import fixed_pointwise

        s0, s1 = self.config.group_slices()[k]
        c, m = s1 - s0, self.config.m
        delta = fixed_pointwise(torch.cat(parts, 1), self.nets[f"agg{k}"])
        hyper = parts[0]
        return hyper[:, s0:s1] + delta[:, :c], hyper[:, m + s0 : m + s1] + delta[:, c:]


def freeze_mlic(model: MlicModel, base: FrozenElic, meta: dict | None = None) -> FrozenMlic:
    """Freeze a trained ``MlicModel`` on top of ``base`` (the ``elic-int`` frozen model).

    Refused when the model's y gains differ from the base's (its integer synthesis would not
    fit). The returned model's float modules hold exactly what the coder runs."""
    model = model.eval()
    if not torch.equal(model.y_gain.log_inverse.detach(), base.model.y_gain.log_inverse.detach()):
        raise ValueError("the y gains differ from the base's: its integer synthesis would not fit")
    with torch.no_grad():
        own = {
            name: FixedPointNet.from_sequential(model.get_submodule(path))
            for name, path in FrozenMlic.own_twins(model.config).items()
        }
    return _join(base, own, dict(meta or {}))


def _join(base: FrozenElic, own: dict[str, FixedPointNet], meta: dict) -> FrozenMlic:
    cfg = base.config.to_dict()
    cfg["kind"] = KIND
    model = MlicModel(MlicConfig.from_dict(cfg))
    model.load_elic(base.model)  # the base's float modules (twins dequantised)
    for name, path in FrozenMlic.own_twins(model.config).items():
        own[name].load_into(model.get_submodule(path))
    model.eval()
    nets = {**base.nets, **own}
    return FrozenMlic(model, dict(base.tables), nets, dict(base.ints), {**base.meta, **meta})


def save(frozen: FrozenMlic, path: Path, base: Path) -> str:
    """Write ``mlic``'s own networks + the name and sha256 of the base file; returns the sha256."""
    arrays = {}
    for name in FrozenMlic.own_twins(frozen.config):
        arrays.update(frozen.nets[name].to_arrays(f"frozen.{name}."))
    config = {"kind": KIND, "attn_dim": frozen.config.attn_dim}
    return frozen_protocol.save_twin(path, arrays, config, frozen.meta, base)


def load(path: Path) -> FrozenMlic:
    """The ``mlic`` file at ``path`` joined to the ``elic-int`` file it names (same folder,
    same sha256); ``WeightsError`` (one line) for anything else."""
    path = Path(path)
    arrays, config, meta = frozen_protocol.read_weights_file(path)
    if config.get("kind") != KIND:
        raise WeightsError(f"{path.name} holds a {config.get('kind')!r} model, not {KIND!r}")
    base = frozen_protocol.load_twin_base(path, config, (BASE_KIND,))
    if config.get("attn_dim", ATTN_DIM) != ATTN_DIM:
        raise WeightsError(f"{path.name}: attention width {config.get('attn_dim')!r}")
    cfg = MlicConfig.from_dict({**base.config.to_dict(), "kind": KIND})
    try:
        own = {
            name: FixedPointNet.from_arrays(arrays, f"frozen.{name}.")
            for name in FrozenMlic.own_twins(cfg)
        }
        return _join(base, own, meta)
    except (RuntimeError, KeyError, ValueError, FixedPointError) as exc:
        raise WeightsError(f"weights {path} do not match the mlic architecture: {exc}") from None
