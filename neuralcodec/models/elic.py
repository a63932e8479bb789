"""ELIC-style space-channel context model (He et al., CVPR 2022), variable rate (training side).

The transforms, gain units and hyperprior are those of the mean-scale hyperprior
(``hyperprior.py``, same parameter names, so a trained ``mbt-mean`` checkpoint warm-starts it).
The latent ``y`` (M channels) is split into *uneven* channel groups, e.g. 16, 16, 32, 48, 48 for
M = 160; each group is coded in two checkerboard passes, anchors first::

    z_hat --h_s--> hyper (2M features) ──────────────────────────────┐
    y_hat[groups < k] --channel_ctx[k] (5x5 convs)--> ch ────────────┤
    y_hat[k] at anchors --spatial_ctx[k] (5x5 conv)--> sp (0 at anchors)
                                                                     v
          (scale, mean)[k] = hyper[k] + param_agg[k](cat(hyper, ch, sp))  (1x1 convs)

``hyper[k]`` is the group's slice of the hyper features read as (scale, mean), exactly as in the
mean-scale model, and the last layer of every ``param_agg`` starts at zero: a fresh model *is*
the mean-scale hyperprior, and the contexts learn a correction on top of it.

Training (``forward``): uniform noise for the rate term (rounding around the mean in eval mode),
straight-through rounding around the mean for the synthesis input and for every context input;
anchors' parameters use a zero spatial context, non-anchors' the context of the anchors' ŷ.
No pixel-serial autoregression: 2 x groups parallel steps.

``freeze`` turns every network that picks a CDF (hyper-synthesis, channel/spatial contexts,
parameter aggregation) into an exact integer ``FixedPointNet``; ``FrozenElic.group_params_fixed``
is the integer twin of ``ElicModel.group_params`` that encoder and decoder both run. ``save``
and ``load`` keep everything in one safetensors file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..entropy.models import quantize_noise, quantize_ste
from . import checker
from . import frozen as frozen_protocol
from .fixedpoint import ACT_BITS, ACT_LIMIT, FixedPointNet
from .frozen import Frozen, HyperParts, family
from .hyperprior import DEFAULT_LAMBDAS, build_transforms

KIND = "elic"
INT_KIND = "elic-int"  # same model, every network of the decoder in integer arithmetic
ACT_SCALE = 2.0**ACT_BITS
HAT_LIMIT = ACT_LIMIT / ACT_SCALE  # context inputs are clamped to the fixed-point range


def uneven_groups(m: int) -> tuple[int, ...]:
    """ELIC's uneven split: small leading groups (16, 16, 32), the rest in one or two big ones.

    M = 160 -> (16, 16, 32, 48, 48); M = 320 -> (16, 16, 32, 64, 192) as in the paper.
    """
    if m < 96:
        raise ValueError(f"no default channel groups for m={m} < 96; pass groups explicitly")
    rest = m - 64
    tail = (rest // 2, rest - rest // 2) if rest <= 128 else (64, rest - 64)
    return (16, 16, 32, *tail)


@dataclass
class ElicConfig:
    kind: str = KIND
    n: int = 96
    m: int = 160
    groups: tuple[int, ...] = ()  # empty: uneven_groups(m)
    ctx_hidden: int = 64  # width of the channel-context convolutions
    agg_hidden: int = 192  # width of the parameter-aggregation 1x1 convolutions
    transform: str = "gdn"  # g_a/g_s: "gdn" | "hybrid" (see transforms.py)
    lambdas: tuple[float, ...] = field(default_factory=lambda: DEFAULT_LAMBDAS)
    synthesis_widths: tuple[int, ...] = ()  # g_s hidden widths; empty: n (compress/prune.py)
    hyper_ranks: tuple[int, ...] = ()  # h_s layers' ranks, 0 = full; empty: none (lowrank.py)

    def __post_init__(self) -> None:
        self.synthesis_widths = tuple(int(v) for v in self.synthesis_widths)
        self.hyper_ranks = tuple(int(v) for v in self.hyper_ranks)
        if self.kind not in (KIND, INT_KIND):
            raise ValueError(f"ElicConfig.kind must be {KIND!r} or {INT_KIND!r}, got {self.kind!r}")
        self.groups = tuple(int(g) for g in self.groups) or uneven_groups(self.m)
        self.lambdas = tuple(float(v) for v in self.lambdas)
        if min(self.groups) <= 0 or sum(self.groups) != self.m:
            raise ValueError(f"groups {self.groups} must be positive and sum to m={self.m}")
        if min(self.n, self.ctx_hidden, self.agg_hidden) <= 0 or not self.lambdas:
            raise ValueError("n, ctx_hidden, agg_hidden must be positive and lambdas non-empty")

    def group_slices(self) -> list[tuple[int, int]]:
        ends = np.cumsum(self.groups).tolist()
        return list(zip([0, *ends[:-1]], ends, strict=True))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["groups"], d["lambdas"] = list(self.groups), list(self.lambdas)
        if self.synthesis_widths:
            d["synthesis_widths"] = list(self.synthesis_widths)
        else:  # absent when default: files written before the field existed stay byte-identical
            del d["synthesis_widths"]
        if self.hyper_ranks:
            d["hyper_ranks"] = list(self.hyper_ranks)
        else:
            del d["hyper_ranks"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ElicConfig:
        d = dict(d)
        d["groups"] = tuple(d.get("groups", ()))
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)


def checkerboard_masks(h: int, w: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchor, non_anchor) masks shaped (1, 1, h, w): anchors where ``(row + col)`` is even."""
    rows = torch.arange(h)[:, None]
    cols = torch.arange(w)[None, :]
    anchor = ((rows + cols) % 2 == 0)[None, None]
    return anchor.to(dtype), (~anchor).to(dtype)


def channel_context(cin: int, cout: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 5, padding=2), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 5, padding=2), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, cout, 5, padding=2),
    )  # fmt: skip


def spatial_context(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, 2 * c, 5, padding=2))


def param_aggregation(cin: int, cout: int, hidden: int) -> nn.Sequential:
    seq = nn.Sequential(
        nn.Conv2d(cin, hidden, 1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, cout, 1),
    )  # fmt: skip
    nn.init.zeros_(seq[-1].weight)
    nn.init.zeros_(seq[-1].bias)
    return seq


def split_params(
    base: torch.Tensor, delta: torch.Tensor, m: int, s0: int, s1: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scales, means) of group ``[s0, s1)``: hyper slice (scale | mean halves) + correction."""
    c = s1 - s0
    scales = base[:, s0:s1] + delta[:, :c]
    means = base[:, m + s0 : m + s1] + delta[:, c:]
    return scales, means


class ElicModel(nn.Module):
    """Mean-scale hyperprior + uneven channel groups + two-pass checkerboard; ``forward`` trains."""

    def __init__(self, config: ElicConfig):
        super().__init__()
        self.config = config
        m = config.m
        build_transforms(self, config, hyper_outputs=2)
        groups = config.groups
        self.channel_ctx = nn.ModuleList(
            channel_context(sum(groups[:k]), 2 * groups[k], config.ctx_hidden)
            for k in range(1, len(groups))
        )
        self.spatial_ctx = nn.ModuleList(spatial_context(c) for c in groups)
        self.param_agg = nn.ModuleList(
            param_aggregation(2 * m + (4 if k else 2) * c, 2 * c, config.agg_hidden)
            for k, c in enumerate(groups)
        )

    @property
    def num_qualities(self) -> int:
        return len(self.config.lambdas)

    def group_params(
        self, k: int, hyper: torch.Tensor, ch: torch.Tensor | None, sp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) of group ``k`` from hyper features, channel and spatial contexts."""
        s0, s1 = self.config.group_slices()[k]
        parts = [hyper, sp] if ch is None else [hyper, ch, sp]
        delta = self.param_agg[k](torch.cat(parts, dim=1))
        return split_params(hyper, delta, self.config.m, s0, s1)

    def _rate_values(self, y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        if self.training:
            return quantize_noise(y)
        return torch.round(y - means) + means

    def latent_forward(
        self, y: torch.Tensor, hyper: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantised ``y_hat`` and the likelihoods of ``y``, group by group, anchors first."""
        anchor, non_anchor = checkerboard_masks(*y.shape[-2:], dtype=y.dtype)
        anchor, non_anchor = anchor.to(y.device), non_anchor.to(y.device)
        hats, liks = [], []
        for k, (s0, s1) in enumerate(self.config.group_slices()):
            y_k = y[:, s0:s1]
            ch = (
                self.channel_ctx[k - 1](torch.cat(hats, 1).clamp(-HAT_LIMIT, HAT_LIMIT))
                if k
                else None
            )
            zero = y.new_zeros(y.shape[0], 2 * (s1 - s0), *y.shape[-2:])
            s_a, m_a = self.group_params(k, hyper, ch, zero)
            hat_a = quantize_ste(y_k - m_a) + m_a
            sp = self.spatial_ctx[k](hat_a.clamp(-HAT_LIMIT, HAT_LIMIT) * anchor) * non_anchor
            s_n, m_n = self.group_params(k, hyper, ch, sp)
            scales = s_a * anchor + s_n * non_anchor
            means = m_a * anchor + m_n * non_anchor
            liks.append(self.y_conditional.likelihood(self._rate_values(y_k, means), scales, means))
            hats.append(quantize_ste(y_k - means) + means)
        return torch.cat(hats, 1), torch.cat(liks, 1)

    def code_forward(
        self, y: torch.Tensor, q: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``y`` (after the gain) -> (ŷ, likelihoods of "z" and "y"): everything between the
        analysis and the synthesis. Eval mode rounds, so its rate predicts the coded size."""
        z = self.h_a(y) * self.z_gain.gain(q)
        z_rate = quantize_noise(z) if self.training else torch.round(z)
        likelihoods = {"z": self.z_density.likelihood(z_rate)}
        hyper = self.h_s(quantize_ste(z) * self.z_gain.inverse(q))
        y_hat, likelihoods["y"] = self.latent_forward(y, hyper)
        return y_hat, likelihoods

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict:
        """``x`` in [0, 1], (B, 3, H, W) with H, W multiples of 64; ``q`` (B,) int64 quality."""
        y_hat, likelihoods = self.code_forward(self.g_a(x) * self.y_gain.gain(q), q)
        x_hat = self.g_s(y_hat * self.y_gain.inverse(q))
        return {"x_hat": x_hat, "likelihoods": likelihoods}


# --------------------------------------------------------------------------- frozen (coding)


def _fixed_hat(hat_fx: torch.Tensor) -> torch.Tensor:
    return hat_fx.clamp(-ACT_LIMIT, ACT_LIMIT)


@family
class FrozenElic(HyperParts, Frozen):
    """Everything the coder needs: float transforms, integer tables and integer context nets.

    Parts (``models/frozen.py`` protocol): tables ``y`` and ``z``; twins ``hs`` (hyper-synthesis),
    ``ch1..`` (channel contexts of groups 1..G-1, stored as ``ch0..``), ``sp<k>`` (spatial
    contexts) and ``agg<k>`` (parameter aggregation); ``zinv`` (inverse hyper gains).
    """

    kinds = (KIND,)
    config_class, model_class = ElicConfig, ElicModel

    def _group_nets(self, prefix: str) -> list[FixedPointNet]:
        count = len(self.config.groups) - (prefix == "ch")
        return [self.nets[f"{prefix}{i}"] for i in range(count)]

    @property
    def channel_fixed(self) -> list[FixedPointNet]:  # groups 1..G-1
        return self._group_nets("ch")

    @property
    def spatial_fixed(self) -> list[FixedPointNet]:
        return self._group_nets("sp")

    @property
    def agg_fixed(self) -> list[FixedPointNet]:
        return self._group_nets("agg")

    @classmethod
    def twin_modules(cls, config: ElicConfig) -> dict[str, str]:
        groups = len(config.groups)
        twins = {"hs": "h_s"}
        for name, module, count in _GROUP_TWINS:
            twins.update({f"{name}{i}": f"{module}.{i}" for i in range(groups - count)})
        return twins

    @classmethod
    def part_names(cls, config: ElicConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return ("y", "z"), ("zinv",)

    @classmethod
    def integer_parts(cls, model: ElicModel):
        return cls.hyper_integer_parts(model)

    @property
    def config(self) -> ElicConfig:
        return self.model.config

    def hyper_fixed(self, z_int: torch.Tensor, qi: int) -> torch.Tensor:
        """Hyper features at scale 2^ACT_BITS from the integer hyper-latent (exact)."""
        zinv = torch.from_numpy(self.z_inverse_fixed[qi].astype(np.float64))
        return self.hs_fixed(z_int.double() * zinv[None, :, None, None])

    def channel_context_fixed(
        self, k: int, prev_hats_fx: list[torch.Tensor]
    ) -> torch.Tensor | None:
        """Integer channel context of group ``k`` from ŷ of groups < k (None for group 0)."""
        if k == 0:
            return None
        net = self.channel_fixed[k - 1]
        x = _fixed_hat(torch.cat(prev_hats_fx, 1))
        a = checker.net_input(net, x)
        return net(x) if a is None else checker.run_prepared(net, a)

    def group_params_fixed(
        self,
        k: int,
        hyper_fx: torch.Tensor,
        prev_hats_fx: list[torch.Tensor],
        anchor_hat_fx: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer twin of ``ElicModel.group_params`` for one checkerboard pass, on the whole map.

        ``prev_hats_fx``: ŷ of groups < k; ``anchor_hat_fx``: ŷ of group k (only its anchors are
        read), or None for the anchor pass. All at scale 2^ACT_BITS; returns (scales, means) on
        the whole map at that scale, float64 holding integers. The coder uses ``pass_params_fixed``,
        which gives the same integers at the positions of one pass only.
        """
        s0, s1 = self.config.group_slices()[k]
        b, _, h, w = hyper_fx.shape
        if anchor_hat_fx is None:
            sp = hyper_fx.new_zeros(b, 2 * (s1 - s0), h, w)
        else:
            anchor, non_anchor = checkerboard_masks(h, w, torch.float64)
            sp = self.spatial_fixed[k](_fixed_hat(anchor_hat_fx) * anchor) * non_anchor
        parts = [hyper_fx, sp]
        if k:
            parts.insert(1, self.channel_context_fixed(k, prev_hats_fx))
        delta = self.agg_fixed[k](torch.cat(parts, 1))
        return split_params(hyper_fx, delta, self.config.m, s0, s1)

    def pass_params_fixed(
        self,
        k: int,
        hyper_fx: torch.Tensor,
        channel_fx: torch.Tensor | None,
        anchor_hat_fx: torch.Tensor | None,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) of group ``k`` at the positions of ``mask`` (h, w) only: (B, c, n).

        ``channel_fx`` is ``channel_context_fixed(k, ...)``, computed once for both passes. The
        parameter aggregation is a stack of 1x1 convolutions, so it runs on the gathered
        positions alone; the integers are those of ``group_params_fixed`` at those positions,
        at about half the work.
        """
        s0, s1 = self.config.group_slices()[k]
        c, m = s1 - s0, self.config.m
        b, _, h, w = hyper_fx.shape
        parity = _checker_parity(mask)
        if parity is not None:  # strided halves and the quarter-work spatial context
            n = h * (w // 2)

            def at(t: torch.Tensor) -> torch.Tensor:
                return checker.half(t, parity).reshape(b, t.shape[1], n)

            anchors = None if anchor_hat_fx is None else checker.half(anchor_hat_fx, 0)
            channel = None if channel_fx is None else at(channel_fx)
            return self.checker_params_fixed(k, at(hyper_fx), channel, anchors)
        where = mask.reshape(-1).nonzero().squeeze(1)

        def gather(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], h * w)[:, :, where]

        hyper = gather(hyper_fx)
        if anchor_hat_fx is None:
            sp = hyper.new_zeros(b, 2 * c, where.numel())
        else:  # the non-anchor pass: anchors' ŷ as spatial context
            anchor = checkerboard_masks(h, w, torch.float64)[0]
            sp = gather(self.spatial_fixed[k](_fixed_hat(anchor_hat_fx) * anchor))
        parts = [hyper, sp] if channel_fx is None else [hyper, gather(channel_fx), sp]
        delta = self.agg_fixed[k](torch.cat(parts, 1)[..., None])[..., 0]
        return hyper[:, s0:s1] + delta[:, :c], hyper[:, m + s0 : m + s1] + delta[:, c:]

    def checker_params_fixed(
        self,
        k: int,
        hyper_at: torch.Tensor,
        channel_at: torch.Tensor | None,
        anchors: torch.Tensor | None,
        memo: dict | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``pass_params_fixed`` on a map of even height and width, from packed halves
        (``models/checker.py``): ``hyper_at`` and ``channel_at`` (B, C, n) already at the pass's
        positions; ``anchors`` None for the anchor pass, else ŷ of group ``k`` at the anchors,
        packed (B, c, H, W / 2). Same integers as ``pass_params_fixed``. ``memo``: a dict kept
        by the caller for one pass's ``hyper_at`` across groups (its prepared input is shared by
        the aggregation networks of equal input scale and bound)."""
        s0, s1 = self.config.group_slices()[k]
        c, m = s1 - s0, self.config.m
        b, _, n = hyper_at.shape
        agg = self.agg_fixed[k]
        if checker.preparable(agg):
            key = checker.net_key(agg)
            hyper_in = None if memo is None else memo.get(key)
            if hyper_in is None:
                hyper_in = checker.net_input(agg, hyper_at)
                if memo is not None:
                    memo[key] = hyper_in
            parts = [hyper_in]
            if channel_at is not None:
                parts.append(checker.net_input(agg, channel_at))
            if anchors is None:
                parts.append(hyper_in.new_zeros(b, 2 * c, n))
            else:
                sp = self.spatial_others_fixed(k, anchors).reshape(b, 2 * c, n)
                parts.append(checker.net_input(agg, sp))
            delta = checker.run_prepared(agg, torch.cat(parts, 1)[..., None])[..., 0]
            return hyper_at[:, s0:s1] + delta[:, :c], hyper_at[:, m + s0 : m + s1] + delta[:, c:]
        if anchors is None:
            sp = hyper_at.new_zeros(b, 2 * c, n)
        else:
            sp = self.spatial_others_fixed(k, anchors).reshape(b, 2 * c, n)
        parts = [hyper_at, sp] if channel_at is None else [hyper_at, channel_at, sp]
        delta = self.agg_fixed[k](torch.cat(parts, 1)[..., None])[..., 0]
        return hyper_at[:, s0:s1] + delta[:, :c], hyper_at[:, m + s0 : m + s1] + delta[:, c:]

    def spatial_others_fixed(self, k: int, anchors: torch.Tensor) -> torch.Tensor:
        """The spatial context of group ``k`` at the non-anchors, packed (B, 2c, H, W / 2), from
        its ŷ at the anchors, packed (B, c, H, W / 2): the integers of ``spatial_fixed[k]`` on
        the anchors-only map, computed on the anchors alone (``checker.half_conv``)."""
        net = self.spatial_fixed[k]
        fast = _half_spatial(self, k, net, anchors)
        if fast is not None:
            return fast
        zeros = torch.zeros_like(anchors)
        full = net(_fixed_hat(checker.merge(anchors, zeros)))
        return checker.half(full, 1)


def _checker_parity(mask: torch.Tensor) -> int | None:
    """0 / 1 when ``mask`` (H, W) is the anchors / non-anchors of a map of even size, else None."""
    h, w = mask.shape
    if not checker.packable(h, w):
        return None
    for p, ref in enumerate(checkerboard_masks(h, w, torch.bool)):
        if torch.equal(mask, ref[0, 0]):
            return p
    return None


def _half_spatial(frozen, k: int, net, anchors: torch.Tensor) -> torch.Tensor | None:
    """``spatial_others_fixed`` for a one-layer IntNet / FixedPointNet of a K x K, stride-1,
    same-padded convolution; None for anything else (the caller then runs the full map)."""
    from ..compress import intconv
    from ..compress.intnet import IntNet, _round_shift

    if len(net.layers) != 1:
        return None
    layer = net.layers[0]
    cache = frozen.__dict__.setdefault("_half_weights", {})
    b, _, h, w2 = anchors.shape
    if isinstance(net, IntNet):
        g = layer.geometry
        if g.transposed or g.stride != 1 or g.kernel % 2 == 0 or g.padding != g.kernel // 2:
            return None
        _, (split, groups), _ = layer._prepared()
        a = _round_shift(_fixed_hat(anchors), net.exponents[0] - ACT_BITS)
        a = a.clamp(-layer.in_bound, layer.in_bound)
        if groups == 0:  # the float64 plan
            a, path, groups, factors = a.double(), "float64", 1, np.ones(1, dtype=np.int64)
        else:
            a, path, factors = a.float(), "float32", np.ones(groups, dtype=np.int64)
            if split:  # the value split: hi * 2^split + lo, a batch of two (hi partials first)
                hi = torch.floor(a * 2.0**-split)
                a = torch.cat([hi, a - hi * 2.0**split], 0)
                factors = np.concatenate([np.full(groups, 2**split), factors])
        key = (id(layer), path, groups)
        if key not in cache or cache[key][0] is not layer:
            weight = layer._weights(path, 0 if path == "float64" else groups)
            cache[key] = layer, checker.half_weights(weight)
        with intconv._highest_precision():
            acc = checker.half_conv(a, cache[key][1], groups)
        if split:  # (2B, P C, H, W/2) -> (B, 2 P C, H, W/2)
            acc = acc.view(2, b, *acc.shape[1:]).transpose(0, 1).reshape(b, -1, h, w2)
        lo = 0 if layer.relu else -layer.out_bound
        cout = layer.cout
        if intconv._use_c(None, anchors):
            out = torch.empty(b, cout, h, w2, dtype=torch.float32)
            args = (acc[0].contiguous().numpy(), factors, 1, 0, layer.bias, layer.mult)
            args += (layer.shift, lo, layer.out_bound, out[0].numpy(), 0)
            intconv.by_channels(_ext_requant(), args, cout, out.numel())
            return out.double()
        f = torch.from_numpy(factors.astype(np.float64)).view(1, -1, 1, 1, 1)
        acc = (acc.double().view(b, len(factors), cout, h, w2) * f).sum(1)
        acc = acc + torch.from_numpy(layer.bias.astype(np.float64)).view(1, -1, 1, 1)
        out = intconv.requantize(acc, layer.mult, layer.shift).clamp_(lo, layer.out_bound)
        return out.float().double()
    if isinstance(net, FixedPointNet):
        k_size = layer.weight.shape[-1]
        if layer.transposed or layer.stride != 1 or k_size % 2 == 0 or layer.padding != k_size // 2:
            return None
        key = (id(layer), "fixed", 1)
        if key not in cache or cache[key][0] is not layer:
            cache[key] = layer, checker.half_weights(layer.weight)
        acc = checker.half_conv(_fixed_hat(anchors), cache[key][1]) + layer.bias.view(1, -1, 1, 1)
        if layer.relu:
            acc = acc.clamp_min(0)
        out = torch.floor(acc * 2.0**-layer.wbits + 0.5)
        return out.clamp_(-ACT_LIMIT, ACT_LIMIT)
    return None


def _ext_requant():
    from ..kernels import _ext

    return _ext._intnet.requant


# (file name prefix, float module list, groups without one): the channel context has none for group 0
_GROUP_TWINS = (("ch", "channel_ctx", 1), ("sp", "spatial_ctx", 0), ("agg", "param_agg", 0))


def load(path: Path) -> FrozenElic:
    """``frozen.load`` that accepts ELIC weights only; ``WeightsError`` for anything else."""
    return frozen_protocol.load(path, kinds=(KIND,))
