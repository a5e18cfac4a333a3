"""OTReg loss pieces: de-duplication, blank anchor, marginals, gradients, stats."""

import pytest
import torch

from espnet_otreg.slm.otreg import first_occurrence_mask, otreg_loss


def test_first_occurrence_mask():
    ids = torch.tensor([[5, 7, 5, 9, 7, -1], [3, 3, 3, -1, -1, -1]])
    mask = ids >= 0
    got = first_occurrence_mask(ids, mask)
    want = torch.tensor([[1, 1, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(got, want)


def batch(B=3, N=12, M=5, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, D, generator=g)
    y = torch.randn(B, M, D, generator=g)
    nx = torch.tensor([N, N - 3, 4])[:B]
    ny = torch.tensor([M, 2, M - 1])[:B]
    xm = torch.arange(N)[None] < nx[:, None]
    ym = torch.arange(M)[None] < ny[:, None]
    ids = torch.randint(0, 3, (B, M), generator=g)
    return x, xm, y, ym, ids


@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
def test_plan_marginals_and_value(cost):
    x, xm, y, ym, ids = batch()
    blank = torch.randn(x.size(-1))
    res = otreg_loss(x, xm, y, ym, text_ids=ids, blank=blank, cost=cost, tol=1e-6, max_iter=2000)
    keep = first_occurrence_mask(ids, ym)
    cols = torch.cat([keep, torch.ones(3, 1, dtype=torch.bool)], 1)
    assert torch.equal(res.target_mask, cols)
    P = res.plan
    # uniform marginals over real frames and kept targets (+ blank); zero elsewhere
    a = xm.float() / xm.sum(1, keepdim=True)
    b = cols.float() / cols.sum(1, keepdim=True)
    assert torch.allclose(P.sum(2), a, atol=1e-4)
    assert torch.allclose(P.sum(1), b, atol=1e-4)
    assert (P[~cols[:, None, :].expand_as(P)] == 0).all()
    assert res.converged.all()
    # loss = <P, C> with the unscaled cost
    from espnet_otreg import ot

    full_y = torch.cat([y, blank.expand(3, 1, -1)], 1)
    C = (ot.sqeuclidean if cost == "sqeuclidean" else ot.cosine)(x, full_y, xm, cols)
    assert torch.allclose(res.loss, (P * C).sum((1, 2)), atol=1e-5)
    assert ((res.cosine > -1) & (res.cosine < 1)).all()
    n_support = xm.sum(1) * cols.sum(1)
    assert ((res.entropy > 0) & (res.entropy <= torch.log(n_support.float()) + 1e-5)).all()


def test_envelope_gradient_is_plan_times_cost_gradient():
    x, xm, y, ym, _ = batch()
    x = x.double().requires_grad_()
    res = otreg_loss(x, xm, y.double(), ym, cost="sqeuclidean")
    res.loss.sum().backward()
    # d<P, C>/dx_i with P fixed = sum_j P_ij * 2 (x_i - y_j)
    P = res.plan.double()
    want = 2 * (P.sum(2, keepdim=True) * x.detach() - P @ y.double())
    assert torch.allclose(x.grad, want, atol=1e-10)


def test_autodiff_gradient_differs_and_text_gets_none():
    x, xm, y, ym, _ = batch()
    y = y.requires_grad_()
    g = []
    for mode in ("envelope", "autodiff"):
        xx = x.clone().requires_grad_()
        otreg_loss(xx, xm, y, ym, cost="cosine", grad=mode).loss.sum().backward()
        g.append(xx.grad)
    assert torch.isfinite(g[1]).all() and not torch.allclose(g[0], g[1])
    assert y.grad is None  # transcript embeddings are the target (detached)


def test_unbalanced_and_bad_options():
    x, xm, y, ym, _ = batch()
    res = otreg_loss(x, xm, y, ym, tau=0.5)
    assert torch.isfinite(res.loss).all()
    with pytest.raises(ValueError, match="cost"):
        otreg_loss(x, xm, y, ym, cost="l1")
    with pytest.raises(ValueError, match="grad"):
        otreg_loss(x, xm, y, ym, grad="detach")


def test_normalized_loss_scale_is_the_raw_loss_over_max_cost():
    """loss_scale="normalized": <P, C / max C>, same plan, gradient scaled alike."""
    x, xm, y, ym, _ = batch()
    out = {}
    for scale in ("raw", "normalized"):
        xx = (10 * x).clone().requires_grad_()  # large norms: raw losses in the hundreds
        res = otreg_loss(xx, xm, 10 * y, ym, cost="sqeuclidean", loss_scale=scale)
        res.loss.sum().backward()
        out[scale] = (res, xx.grad)
    (raw, g_raw), (norm, g_norm) = out["raw"], out["normalized"]
    assert torch.equal(raw.plan, norm.plan)
    from espnet_otreg import ot

    C = ot.sqeuclidean(10 * x, 10 * y, xm, ym)
    cmax = C.amax((1, 2))
    assert torch.allclose(norm.loss, raw.loss / cmax, rtol=1e-5)
    assert (norm.loss <= 1).all() and (raw.loss > 10).all()
    assert torch.allclose(g_norm, g_raw / cmax[:, None, None], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="loss_scale"):
        otreg_loss(x, xm, y, ym, loss_scale="max")
