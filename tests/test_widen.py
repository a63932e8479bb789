"""Widening an ELIC model's latent keeps what the trained channels do, exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from neuralcodec.models import elic
from neuralcodec.models.widen import widen_elic
from neuralcodec.train import warm_start

SRC = elic.ElicConfig(
    n=24, m=48, groups=(8, 8, 16, 16), ctx_hidden=16, agg_hidden=24, transform="hybrid"
)


def _trained_like() -> elic.ElicModel:
    """A random source model whose every layer matters (non-zero residuals and contexts)."""
    torch.manual_seed(0)
    model = elic.ElicModel(SRC)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and float(p.abs().max()) == 0:
                p.normal_(0, 0.05)
        model.y_gain.log_gain.add_(2.0)
        model.y_gain.log_inverse.sub_(2.0)
        model.h_s[-1].bias[: SRC.m].fill_(1.0)
        for seq in model.param_agg:
            seq[-1].bias.normal_(0, 0.1)
    return model.eval()


def _crops() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 3, 64, 64, generator=g)


def test_widened_model_codes_the_trained_channels_exactly_as_before():
    src = _trained_like()
    dst = widen_elic(src, 64, _crops()).eval()
    assert dst.config.m == 64 and dst.config.groups == (8, 8, 16, 32)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    q = torch.tensor([5])
    with torch.no_grad():
        y_src = src.g_a(x) * src.y_gain.gain(q)
        y_dst = dst.g_a(x) * dst.y_gain.gain(q)
        assert torch.equal(y_src, y_dst[:, : SRC.m])
        hat_s, lik_s = src.code_forward(y_src, q)
        hat_d, lik_d = dst.code_forward(y_dst, q)
        # same hyper-latent, same parameters and values for every trained channel
        torch.testing.assert_close(lik_d["z"], lik_s["z"])
        torch.testing.assert_close(lik_d["y"][:, : SRC.m], lik_s["y"], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(hat_d[:, : SRC.m], hat_s)
        # the synthesis of the trained channels is unchanged when the new ones are zero
        hat_zero = hat_d.clone()
        hat_zero[:, SRC.m :] = 0
        torch.testing.assert_close(
            dst.g_s(hat_zero * dst.y_gain.inverse(q)), src.g_s(hat_s * src.y_gain.inverse(q))
        )
        # and the new channels do carry information: they are not all zero
        assert float(y_dst[:, SRC.m :].abs().mean()) > 0


def test_new_block_rows_are_orthonormal_and_outside_the_trained_span():
    src = _trained_like()
    dst = widen_elic(src, 64, _crops())
    old = src.g_a.block.weight.detach().reshape(SRC.m, -1).double()
    new = dst.g_a.block.weight.detach().reshape(64, -1)[SRC.m :].double()
    torch.testing.assert_close(new @ new.T, torch.eye(16, dtype=torch.float64), atol=1e-5, rtol=0)
    q, _ = torch.linalg.qr(old.T)
    assert float((new @ q).abs().max()) < 1e-5
    torch.testing.assert_close(dst.g_s.block.weight[SRC.m :], dst.g_a.block.weight[SRC.m :])


def test_new_units_are_trainable():
    """Every new weight block gets a gradient: nothing starts dead."""
    dst = widen_elic(_trained_like(), 64, _crops()).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    out = dst(x, torch.tensor([6, 7]))
    loss = out["x_hat"].square().mean() + sum(-v.log().sum() for v in out["likelihoods"].values())
    loss.backward()
    m0 = SRC.m
    grads = {
        "g_s.block (new rows)": dst.g_s.block.weight.grad[m0:],
        "h_s.4 (new scale rows)": dst.h_s[4].weight.grad[m0:64],
        "param_agg.3.0 (new spatial columns)": dst.param_agg[3][0].weight.grad[:, -32:],
    }
    for name, g in grads.items():
        assert float(g.abs().sum()) > 0, name


def test_widen_refuses_narrower_or_non_hybrid_models():
    with pytest.raises(ValueError, match="larger"):
        widen_elic(_trained_like(), 48, _crops())
    gdn = elic.ElicModel(elic.ElicConfig(n=24, m=48, groups=(8, 8, 16, 16), transform="gdn"))
    with pytest.raises(ValueError, match="hybrid"):
        widen_elic(gdn, 64, _crops())


def test_warm_start_widens_a_narrower_checkpoint(tmp_path):
    src = _trained_like()
    path = tmp_path / "src.safetensors"
    save_file(
        {k: v.contiguous() for k, v in src.state_dict().items()},
        str(path),
        metadata={"config": json.dumps(src.config.to_dict())},
    )
    cfg = elic.ElicConfig.from_dict({**SRC.to_dict(), "m": 64, "groups": [8, 8, 16, 32]})
    model = elic.ElicModel(cfg)
    loaded = warm_start(model, path, crops=_crops)
    assert loaded == len(model.state_dict())
    torch.testing.assert_close(model.g_a.block.weight[: SRC.m], src.g_a.block.weight)
    other = elic.ElicModel(elic.ElicConfig.from_dict({**cfg.to_dict(), "groups": [8, 8, 24, 24]}))
    with pytest.raises(ValueError, match="groups"):
        warm_start(other, path, crops=_crops)
