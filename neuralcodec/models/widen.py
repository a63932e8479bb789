"""Widen a trained ELIC model's latent (more channels in its last group), keeping what it learned.

With ``M`` latent channels at stride 16 a model cannot reconstruct more than its transform keeps
(``M`` of the 768 dimensions of a 16x16x3 block): the shipped ``M = 192`` model tops out at
31.6 dB on kodim13 even without quantisation. ``widen_elic`` builds a model with ``M' > M`` whose
first ``M`` channels, hyperprior and contexts are the trained ones, placed where the wider
model's layouts expect them::

    y channels      [0, M) copied  |  [M, M') new, all in the last channel group
    h_s output      [scales | means]: each half keeps its M trained rows; the new scale rows copy
                    the trained rows of the last group (a plausible start), new mean rows are 0
    param_agg input cat(hyper 2M', channel ctx, spatial ctx): trained columns moved to their
                    new offsets, columns of new features 0
    hidden units    new ones (h_s widths grow with M) get small random input weights and zero
                    output weights, so they change nothing until training uses them

The new analysis/synthesis block rows are the leading principal components of training blocks
*outside* the span of the trained block basis, so the new channels start by carrying what the
linear path could not; every residual-stack weight that reads or writes a new channel starts at
0. Before any training step the wider model therefore reconstructs at least as well as the source
(plus the new components) and predicts the trained channels' parameters exactly as before.
"""

from __future__ import annotations

import torch

from .elic import ElicConfig, ElicModel
from .transforms import BLOCK, HybridAnalysis

_NEW_STD = 0.1  # new hidden units' input weights: this fraction of the tensor's trained std


def _index(old: int, new: int, halves: int = 1) -> torch.Tensor:
    """Positions in the new layout of the old entries when a layout of ``halves`` equal parts
    grows from ``old`` to ``new`` entries per part (new entries at the end of each part)."""
    return torch.cat([torch.arange(old) + h * new for h in range(halves)])


def _small(like: torch.Tensor, shape, generator: torch.Generator) -> torch.Tensor:
    std = float(like.float().std()) if like.numel() > 1 else 1.0
    return torch.randn(shape, generator=generator) * (_NEW_STD * std)


def _complement_basis(basis: torch.Tensor, crops: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` leading principal components of ``crops``' blocks orthogonal to ``basis``'s rows.

    ``basis`` (M, 768) rows of the trained block transform; returns (count, 768), orthonormal.
    """
    blocks = torch.nn.functional.unfold(crops - 0.5, BLOCK, stride=BLOCK)
    blocks = blocks.transpose(1, 2).reshape(-1, blocks.shape[1]).double()
    q, _ = torch.linalg.qr(basis.double().T)  # (768, M) orthonormal span of the trained rows
    proj = torch.eye(q.shape[0], dtype=torch.float64) - q @ q.T
    rest = blocks @ proj
    cov = rest.T @ rest / rest.shape[0]
    _, vectors = torch.linalg.eigh(cov)
    return vectors.flip(1)[:, :count].T.float()


def widen_elic(src: ElicModel, m: int, crops: torch.Tensor, seed: int = 0) -> ElicModel:
    """A copy of ``src`` with ``m`` latent channels, the extra ones in its last channel group.

    ``crops`` (B, 3, H, W) in [0, 1] (H, W multiples of 16): training patches for the new block
    components. Only the hybrid transform is supported (the new channels need a linear path).
    """
    cfg = src.config
    extra = m - cfg.m
    if extra <= 0:
        raise ValueError(f"cannot widen m={cfg.m} to m={m}: the new width must be larger")
    if not isinstance(src.g_a, HybridAnalysis):
        raise ValueError("widening needs the hybrid transform (a block path for new channels)")
    groups = (*cfg.groups[:-1], cfg.groups[-1] + extra)
    dst = ElicModel(ElicConfig.from_dict({**cfg.to_dict(), "m": m, "groups": list(groups)}))
    old, new = src.state_dict(), dst.state_dict()
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    m0, last0 = cfg.m, cfg.groups[-1]
    last1 = groups[-1]
    k_last = len(groups) - 1

    def place(name: str, dims: dict[int, torch.Tensor], fill: str = "zero") -> None:
        """Copy ``old[name]`` into a tensor of the new shape at the given index per dimension;
        the rest is 0 (``fill="zero"``) or small random values (``fill="random"``)."""
        t_old, shape = old[name], new[name].shape
        t = torch.zeros(shape) if fill == "zero" else _small(t_old, shape, gen)
        idx = [dims.get(d, torch.arange(t_old.shape[d])) for d in range(t_old.dim())]
        t[torch.meshgrid(*idx, indexing="ij")] = t_old.float()
        out[name] = t

    y_idx = torch.arange(m0)
    # analysis / synthesis: trained rows kept, new rows from the complement of the trained basis
    basis_a = old["g_a.block.weight"].reshape(m0, -1)
    comp = _complement_basis(basis_a, crops, extra).reshape(extra, 3, BLOCK, BLOCK)
    for name in ("g_a.block.weight", "g_s.block.weight"):
        out[name] = torch.cat([old[name].float(), comp])
    place("g_a.residual.6.weight", {0: y_idx})
    place("g_a.residual.6.bias", {0: y_idx})
    place("g_s.residual.0.weight", {0: y_idx})
    # gain units: the new channels start with the mean gains of the trained last group
    for name in ("y_gain.log_gain", "y_gain.log_inverse"):
        t = old[name].float()
        tail = t[:, m0 - last0 :].mean(1, keepdim=True).expand(-1, extra)
        out[name] = torch.cat([t, tail], 1)
    # hyper-analysis reads y: new input channels 0
    place("h_a.0.weight", {1: y_idx})
    # hyper-synthesis: hidden widths grow with m (new units random in, zero out)
    place("h_s.0.weight", {}, fill="random")  # ConvTranspose (in, out): new outputs random
    place("h_s.0.bias", {})
    place("h_s.2.weight", {}, fill="random")  # rows of new inputs zeroed just below
    out["h_s.2.weight"][old["h_s.2.weight"].shape[0] :] = 0
    place("h_s.2.bias", {})
    rows = _index(m0, m, 2)  # [scales | means]
    place("h_s.4.weight", {0: rows})
    place("h_s.4.bias", {0: rows})
    copy_from = m0 - last0 + (torch.arange(extra) % last0)  # trained last-group scale rows
    out["h_s.4.weight"][m0:m] = out["h_s.4.weight"][copy_from]
    out["h_s.4.bias"][m0:m] = out["h_s.4.bias"][copy_from]
    # contexts of the last group (the only group that grows)
    ctx = f"channel_ctx.{k_last - 1}.4"
    place(f"{ctx}.weight", {0: torch.arange(2 * last0)}, fill="random")
    place(f"{ctx}.bias", {0: torch.arange(2 * last0)})
    out[f"{ctx}.bias"][2 * last0 :] = 0
    sp = f"spatial_ctx.{k_last}.0"
    place(f"{sp}.weight", {0: torch.arange(2 * last0), 1: torch.arange(last0)}, fill="random")
    out[f"{sp}.weight"][:, last0:] = 0  # new input channels read nothing yet
    place(f"{sp}.bias", {0: torch.arange(2 * last0)})
    # parameter aggregation: inputs cat(hyper 2m, [channel ctx 2c], spatial ctx 2c)
    for k, c in enumerate(groups):
        c0 = c if k < k_last else last0
        parts = [_index(m0, m, 2)]
        offset = 2 * m  # trained features keep their order, each block at its new offset
        for _ in range(2 if k else 1):
            parts.append(torch.arange(2 * c0) + offset)
            offset += 2 * c
        place(f"param_agg.{k}.0.weight", {1: torch.cat(parts)})
        if k == k_last:
            halves = _index(last0, last1, 2)  # delta = [scale c | mean c]
            place(f"param_agg.{k}.4.weight", {0: halves})
            place(f"param_agg.{k}.4.bias", {0: halves})
    for name, value in new.items():
        if name not in out:
            if old[name].shape != value.shape:
                raise RuntimeError(f"widen_elic: no rule for {name} {tuple(old[name].shape)}")
            out[name] = old[name].float()
    dst.load_state_dict({k: v.to(new[k].dtype) for k, v in out.items()})
    return dst
