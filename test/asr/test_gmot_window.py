"""GMOTAligner with a window: banded structures, same coupling as the dense path."""

import pytest
import torch

from espnet_otreg import ot
from espnet_otreg.asr.gmot import GMOTAligner


def _batch(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, 20, 8, generator=g, dtype=dtype)
    z = torch.randn(3, 7, 8, generator=g, dtype=dtype)
    hm = torch.arange(20)[None] < torch.tensor([20, 13, 6])[:, None]
    zm = torch.arange(7)[None] < torch.tensor([7, 4, 0])[:, None]
    return h, hm, z, zm


def _dense_reference(al: GMOTAligner, h, hm, z, zm):
    """Today's dense path: windowed (L, L) structures, zero mode."""
    valid = hm.any(1) & zm.any(1)
    hm, zm = hm & valid[:, None], zm & valid[:, None]
    cost = ot.cosine(h, z, hm, zm) + al.rho * ot.temporal_prior(hm, zm)
    return ot.fused_gromov_wasserstein(
        cost, ot.structure(h, hm, al.edge_metric, window=al.ws),
        ot.structure(z, zm, al.edge_metric, window=al.ws), hm, zm, alpha=al.alpha,
        epsilon=al.epsilon, tau=(al.tau_frames, al.tau_tokens), max_iter=al.max_iter,
        inner_max_iter=al.inner_max_iter, tol=al.tol,
    )


@pytest.mark.parametrize("tau", [None, 1.0])
def test_windowed_aligner_is_banded_and_matches_the_dense_plan(tau, monkeypatch):
    h, hm, z, zm = _batch(dtype=torch.float64)
    al = GMOTAligner(alpha=0.3, rho=0.5, ws=2, tau=tau, tol=1e-9, inner_max_iter=500)
    seen = []
    fgw = ot.fused_gromov_wasserstein

    def spy(cost, c_x, c_y, *args, **kw):
        seen.append((tuple(c_x.shape), tuple(c_y.shape), kw.get("ws"), kw.get("window_mode")))
        return fgw(cost, c_x, c_y, *args, **kw)

    monkeypatch.setattr(ot, "fused_gromov_wasserstein", spy)
    out = al(h, hm, z, zm)
    monkeypatch.undo()
    assert seen == [((3, 20, 5), (3, 7, 5), (2, 2), "zero")]  # (frames, tokens)
    ref = _dense_reference(al, h, hm, z, zm)
    torch.testing.assert_close(out.plan, ref.plan, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.result.value_quadratic, ref.value_quadratic, atol=1e-6, rtol=0)


def test_window_mode_masked_and_errors():
    h, hm, z, zm = _batch()
    h.requires_grad_(True)
    out = GMOTAligner(alpha=0.5, ws=2, window_mode="masked")(h, hm, z, zm)
    zero = GMOTAligner(alpha=0.5, ws=2)(h, hm, z, zm)
    assert GMOTAligner().window_mode == "zero"
    assert (out.plan - zero.plan).abs().max() > 1e-5
    (out.fgw.sum() + out.align.sum()).backward()
    assert torch.isfinite(h.grad).all()
    assert (out.plan[2] == 0).all()
    # Without a window both modes are the complete graph: the mode is not used.
    a = GMOTAligner(alpha=0.5, ws=None, window_mode="masked")(h.detach(), hm, z, zm)
    b = GMOTAligner(alpha=0.5, ws=None)(h.detach(), hm, z, zm)
    torch.testing.assert_close(a.plan, b.plan, atol=0, rtol=0)
    with pytest.raises(ValueError, match="window_mode"):
        GMOTAligner(window_mode="ignore")
