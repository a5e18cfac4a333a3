"""Banded structure matrices (GM-OT's window ws) and FGW's two window modes."""

import pytest
import torch

from espnet_otreg.ot import costs, fused_gromov_wasserstein, sinkhorn, structure
from espnet_otreg.ot.graphs import BandedGraph, DenseGraph, band_mask, from_band, to_band
from ot_helpers import lengths_to_mask, random_batch

X_LENS = [8, 5, 1, 7]
Y_LENS = [6, 2, 3, 7]


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(params=["block", "dense"])
def band_form(request, monkeypatch):
    """Run a test with BandedGraph's block-tridiagonal products, and with its dense
    form (short graphs), whatever the graph size."""
    monkeypatch.setattr(BandedGraph, "DENSE_MAX", 0 if request.param == "block" else 10**9)
    return request.param


@pytest.mark.parametrize("ws", [0, 1, 3, 12])
@pytest.mark.parametrize("L,block", [(7, 16), (37, 4), (16, 16)])
def test_band_round_trip_and_products_match_dense(ws, L, block, band_form):
    R = 4
    dense = _rand(2, L, L)
    idx = torch.arange(L)
    dense = dense * ((idx[:, None] - idx[None, :]).abs() <= ws)
    band = to_band(dense, ws)
    assert band.shape == (2, L, 2 * ws + 1)
    torch.testing.assert_close(from_band(band, ws), dense, atol=0, rtol=0)
    g, d = BandedGraph(band, ws, block), DenseGraph(dense, symmetric=False)
    w, P, Q = _rand(2, L, seed=1), _rand(2, R, L, seed=2), _rand(2, L, R, seed=3)
    torch.testing.assert_close(g.matvec(w), d.matvec(w), atol=1e-12, rtol=0)
    torch.testing.assert_close(g.rmul(P), d.rmul(P), atol=1e-12, rtol=0)
    torch.testing.assert_close(g.lmul(Q), d.lmul(Q), atol=1e-12, rtol=0)
    base = _rand(2, L, R, seed=4)
    torch.testing.assert_close(g.lmul(Q, base=base, alpha=0.3), base + 0.3 * dense @ Q,
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(from_band(g.t().c, ws), dense.transpose(1, 2), atol=0, rtol=0)


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean", "euclidean"])
@pytest.mark.parametrize("ws", [0, 2, 20])
def test_structure_band_equals_band_of_dense(metric, ws):
    x, _, xm, _, _ = random_batch(X_LENS, Y_LENS, seed=1)
    dense = structure(x, xm, metric, window=ws)
    band = structure(x, xm, metric, window=ws, banded=True)
    torch.testing.assert_close(band, to_band(dense, ws), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="window"):
        structure(x, xm, metric, banded=True)


def _problem(window, dtype=torch.float64, seed=0, banded=False):
    x, y, xm, ym, C = random_batch(X_LENS, Y_LENS, dtype=dtype, seed=seed)
    return (C, structure(x, xm, window=window, banded=banded),
            structure(y, ym, window=window, banded=banded), xm, ym)


@pytest.mark.parametrize("tau", [None, 0.5, (0.5, None)])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_banded_zero_mode_gives_the_dense_plan(tau, symmetric, dtype, band_form):
    ws = 2
    C, Cx, Cy, xm, ym = _problem(ws, dtype=dtype)
    if not symmetric:  # directed graphs, still zero outside the window
        Cx = Cx * (1 + _rand(*Cx.shape, seed=5).to(dtype))
        Cy = Cy * (1 + _rand(*Cy.shape, seed=6).to(dtype))
    kw = dict(alpha=0.5, epsilon=0.1, tau=tau, max_iter=20, inner_max_iter=500, tol=1e-9,
              symmetric=symmetric)
    dense = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, **kw)
    band = fused_gromov_wasserstein(C, to_band(Cx, ws), to_band(Cy, ws), xm, ym, ws=ws, **kw)
    torch.testing.assert_close(band.plan, dense.plan, atol=1e-6, rtol=0)
    torch.testing.assert_close(band.value, dense.value, atol=1e-6, rtol=0)
    torch.testing.assert_close(band.value_quadratic, dense.value_quadratic, atol=1e-6, rtol=0)
    if dtype == torch.float64:  # float32 rounding may cross tol=1e-9 at another step
        assert torch.equal(band.n_iter, dense.n_iter)


def _brute_tensor_product(cx, cy, wx, wy, P):
    """sum_kl Wx(i,k) Wy(j,l) (Cx_ik - Cy_jl)^2 P_kl as an einsum over (i, j, k, l)."""
    L = (cx[:, :, None, :, None] - cy[:, None, :, None, :]) ** 2
    W = wx[:, :, None, :, None] * wy[:, None, :, None, :]
    return torch.einsum("bijkl,bkl->bij", W * L, P)


def test_masked_linearisation_and_value_match_brute_force():
    from espnet_otreg.ot.gromov import QuadraticProblem, quadratic_gradient, value_quadratic
    from espnet_otreg.ot.problem import prepare

    ws, N, M = 2, 6, 5
    cx = to_band(_rand(2, N, N, seed=1), ws)  # directed, random inside the window
    cy = to_band(_rand(2, M, M, seed=2), ws)
    P = _rand(2, N, M, seed=3)
    wx, wy = band_mask(torch.ones(2, N), ws).double(), band_mask(torch.ones(2, M), ws).double()
    dcx, dcy, dwx, dwy = from_band(cx, ws), from_band(cy, ws), from_band(wx, ws), from_band(wy, ws)
    want_t = _brute_tensor_product(dcx, dcy, dwx, dwy, P)
    L = (dcx[:, :, None, :, None] - dcy[:, None, :, None, :]) ** 2
    W = dwx[:, :, None, :, None] * dwy[:, None, :, None, :]
    want_tt = torch.einsum("bklij,bkl->bij", W * L, P)  # L^T (x) P
    for symmetric in (False, True):
        g = lambda c: BandedGraph(c, ws)  # noqa: E731
        qp = QuadraticProblem(prepare(P, None, None, None, None), g(cx), g(cy), g(cx * cx),
                              g(cy * cy), alpha=0.5, tau=None, symmetric=symmetric,
                              w_x=g(wx), w_y=g(wy))
        want = 2 * want_t if symmetric else want_t + want_tt
        torch.testing.assert_close(quadratic_gradient(qp, P), want, atol=1e-12, rtol=0)
    value = torch.einsum("bij,bij->b", want_t, P)
    torch.testing.assert_close(value_quadratic(qp, P), value, atol=1e-12, rtol=0)


def _brute_masked_fgw(C, cx, cy, wx, wy, alpha, eps, outer, inner_tol):
    """Projected gradient with the brute-force masked linearisation (dense, one pair)."""
    a = torch.full((C.shape[1],), 1.0 / C.shape[1], dtype=C.dtype)
    b = torch.full((C.shape[2],), 1.0 / C.shape[2], dtype=C.dtype)
    P = (a[:, None] * b[None, :])[None]
    for _ in range(outer):
        G = (1 - alpha) * C + alpha * 2 * _brute_tensor_product(cx, cy, wx, wy, P)
        P = sinkhorn(G, epsilon=eps, tol=inner_tol, max_iter=100000).plan
    return P, _brute_tensor_product(cx, cy, wx, wy, P).mul(P).sum((1, 2))


@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_masked_mode_fgw_matches_brute_force(alpha, band_form):
    ws = 1
    C, Cx, Cy, xm, ym = _problem(ws, banded=True, seed=2)
    res = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=alpha, epsilon=0.1, max_iter=8,
                                   inner_max_iter=20000, tol=0.0, inner_tol=1e-13, ws=ws,
                                   window_mode="masked")
    for b in range(C.shape[0]):
        n, m = int(xm[b].sum()), int(ym[b].sum())
        wx = from_band(band_mask(torch.ones(1, n), ws), ws).double()
        wy = from_band(band_mask(torch.ones(1, m), ws), ws).double()
        P, quad = _brute_masked_fgw(C[b : b + 1, :n, :m], from_band(Cx[b : b + 1, :n], ws),
                                    from_band(Cy[b : b + 1, :m], ws), wx, wy, alpha, 0.1, 8, 1e-13)
        torch.testing.assert_close(res.plan[b, :n, :m], P[0], atol=1e-9, rtol=0)
        assert res.value_quadratic[b].item() == pytest.approx(quad.item(), abs=1e-9)
        assert float(res.plan[b, n:].abs().sum() + res.plan[b, :, m:].abs().sum()) == 0.0


def test_masked_differs_from_zero_and_both_are_safe():
    ws = 1
    C, Cx, Cy, xm, ym = _problem(ws, banded=True, dtype=torch.float32, seed=3)
    kw = dict(alpha=0.5, epsilon=0.1, max_iter=10, inner_max_iter=100, ws=ws)
    zero = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, **kw)
    masked = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, window_mode="masked", **kw)
    for r in (zero, masked):
        for t in (r.plan, r.value, r.value_quadratic):
            assert torch.isfinite(t).all()
    assert (zero.plan - masked.plan).abs().max() > 1e-4


@pytest.mark.parametrize("window_mode", ["zero", "masked"])
@pytest.mark.parametrize("tau", [None, 0.7])
def test_banded_autodiff_gradcheck(window_mode, tau, band_form):
    ws = 1
    xm, ym = lengths_to_mask([4, 3], 4), lengths_to_mask([3, 2], 3)
    C = _rand(2, 4, 3, seed=1)
    Cx = structure(_rand(2, 4, 3, seed=2), xm, "sqeuclidean", window=ws, banded=True)
    Cy = structure(_rand(2, 3, 3, seed=3), ym, "sqeuclidean", window=ws, banded=True)

    def fn(C, Cx, Cy):
        r = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=0.4, epsilon=0.3, tau=tau,
                                     max_iter=3, inner_max_iter=10, tol=0.0, grad="autodiff",
                                     ws=ws, window_mode=window_mode)
        return r.value, r.plan

    assert torch.autograd.gradcheck(fn, tuple(t.requires_grad_(True) for t in (C, Cx, Cy)))


def test_banded_envelope_gradient_flows_to_features():
    x, y, xm, ym, _ = random_batch(X_LENS, Y_LENS, seed=4)
    x.requires_grad_(True)
    for mode in ("zero", "masked"):
        C = costs.cosine(x, y, xm, ym)
        r = fused_gromov_wasserstein(C, structure(x, xm, window=2, banded=True),
                                     structure(y, ym, window=2, banded=True), xm, ym,
                                     alpha=0.5, ws=2, window_mode=mode)
        (gx,) = torch.autograd.grad(r.value.sum(), x)
        assert torch.isfinite(gx).all() and gx[xm].abs().sum() > 0
        assert (gx[~xm] == 0).all()


def test_window_argument_errors():
    C, Cx, Cy = torch.rand(2, 4, 3), torch.rand(2, 4, 4), torch.rand(2, 3, 3)
    with pytest.raises(ValueError, match="window_mode"):
        fused_gromov_wasserstein(C, Cx, Cy, window_mode="ignore")
    with pytest.raises(ValueError, match="needs banded"):
        fused_gromov_wasserstein(C, Cx, Cy, window_mode="masked")
    with pytest.raises(ValueError, match=r"c_x must have shape \(2, 4, 3\) \(a band for ws=1\)"):
        fused_gromov_wasserstein(C, Cx, Cy, ws=1)


@pytest.mark.parametrize("window_mode", ["zero", "masked"])
@pytest.mark.parametrize("tau", [None, 0.5, (None, 0.5)])
def test_a_window_per_graph(window_mode, tau, band_form):
    """ws=(ws_x, ws_y): each graph its own window; zero mode equals the dense windowed
    matrices, and either mode equals the same-window solve when ws_x == ws_y. The pair
    survives the solver's side swap (the batch's X_LENS are not all shorter)."""
    C, Cx, Cy, xm, ym = _problem(None)
    kw = dict(alpha=0.5, epsilon=0.1, tau=tau, max_iter=20, inner_max_iter=500, tol=1e-9)
    wx, wy = 1, 3
    dense_x, dense_y = from_band(to_band(Cx, wx), wx), from_band(to_band(Cy, wy), wy)
    pair = fused_gromov_wasserstein(C, to_band(Cx, wx), to_band(Cy, wy), xm, ym, ws=(wx, wy),
                                    window_mode=window_mode, **kw)
    if window_mode == "zero":
        dense = fused_gromov_wasserstein(C, dense_x, dense_y, xm, ym, **kw)
        torch.testing.assert_close(pair.plan, dense.plan, atol=1e-6, rtol=0)
    same = fused_gromov_wasserstein(C, to_band(Cx, 2), to_band(Cy, 2), xm, ym, ws=2,
                                    window_mode=window_mode, **kw)
    twin = fused_gromov_wasserstein(C, to_band(Cx, 2), to_band(Cy, 2), xm, ym, ws=(2, 2),
                                    window_mode=window_mode, **kw)
    torch.testing.assert_close(twin.plan, same.plan, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"c_y must have shape \(4, 7, 5\) \(a band for ws=2\)"):
        fused_gromov_wasserstein(C, to_band(Cx, wx), to_band(Cy, wy), xm, ym, ws=(wx, 2), **kw)
