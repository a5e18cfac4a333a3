"""Entropic fused Gromov-Wasserstein vs POT, pair by pair, on padded batches."""

import numpy as np
import ot
import pytest
import torch

from espnet_otreg.ot import fused_gromov_wasserstein, sinkhorn, structure
from ot_helpers import lengths_to_mask, pairs, random_batch, unif

X_LENS = [8, 5, 1, 6]
Y_LENS = [5, 2, 3, 5]


def _problem(dtype=torch.float64, seed=0, window=None):
    x, y, xm, ym, C = random_batch(X_LENS, Y_LENS, dtype=dtype, seed=seed)
    return C, structure(x, xm, window=window), structure(y, ym, window=window), xm, ym


def _pot_fgw(C, Cx, Cy, b, n, m, alpha, eps, symmetric=None, max_iter=2000, tol=1e-13):
    return ot.gromov.entropic_fused_gromov_wasserstein(
        C[b, :n, :m].double().numpy(), Cx[b, :n, :n].double().numpy(),
        Cy[b, :m, :m].double().numpy(), unif(n), unif(m), epsilon=eps, alpha=alpha,
        symmetric=symmetric, max_iter=max_iter, tol=tol, numItermax=100000, stopThr=1e-15,
        log=True,
    )


@pytest.mark.parametrize("method", ["stabilized", "log"])
@pytest.mark.parametrize("alpha", [0.02, 0.5, 1.0])
@pytest.mark.parametrize("window", [None, 2])
def test_matches_pot_entropic_fgw(alpha, window, method):
    C, Cx, Cy, xm, ym = _problem(window=window)
    eps = 0.1
    if window is None:
        outer, tol = 2000, 1e-12
    else:
        # With sparse windowed graphs one pair's projected-gradient iterates cycle with
        # period 2 (POT's too): compare the paths after the same number of steps.
        outer, tol = 60, 0.0
    res = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=alpha, epsilon=eps,
                                   max_iter=outer, inner_max_iter=5000, tol=tol,
                                   inner_tol=1e-12, method=method)
    assert res.inner_converged.all()
    if window is None:
        assert res.converged.all()
    for b, n, m in pairs(xm, ym):
        P, log = _pot_fgw(C, Cx, Cy, b, n, m, alpha, eps, max_iter=outer, tol=tol)
        np.testing.assert_allclose(res.plan[b, :n, :m].numpy(), P, atol=1e-9, rtol=0)
        fgw = (1 - alpha) * res.value_linear[b] + alpha * res.value_quadratic[b]
        assert fgw.item() == pytest.approx(float(log["fgw_dist"]), abs=1e-9)
        assert float(res.plan[b, n:].abs().sum() + res.plan[b, :, m:].abs().sum()) == 0.0


def test_matches_pot_float32():
    C, Cx, Cy, xm, ym = _problem(dtype=torch.float32, seed=1)
    res = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=0.5, epsilon=0.1,
                                   max_iter=500, inner_max_iter=2000, tol=1e-6)
    for b, n, m in pairs(xm, ym):
        P, _ = _pot_fgw(C, Cx, Cy, b, n, m, 0.5, 0.1)
        np.testing.assert_allclose(res.plan[b, :n, :m].double().numpy(), P, atol=1e-5, rtol=0)


def test_matches_pot_nonsymmetric_structures():
    C, Cx, Cy, xm, ym = _problem(seed=2)
    g = torch.Generator().manual_seed(0)
    Cx = Cx * (1 + torch.rand(Cx.shape, generator=g, dtype=Cx.dtype))  # directed graphs
    Cy = Cy * (1 + torch.rand(Cy.shape, generator=g, dtype=Cy.dtype))
    res = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=0.5, epsilon=0.1, symmetric=False,
                                   max_iter=2000, inner_max_iter=5000, tol=1e-12)
    for b, n, m in pairs(xm, ym):
        P, _ = _pot_fgw(C, Cx, Cy, b, n, m, 0.5, 0.1, symmetric=False)
        np.testing.assert_allclose(res.plan[b, :n, :m].numpy(), P, atol=1e-9, rtol=0)


def test_linearised_cost_nonsymmetric_matches_brute_force():
    """The plan-gradient of the quadratic term for directed graphs and a plan whose
    marginals are not a, b (as in the unbalanced solver): against an einsum."""
    from espnet_otreg.ot.graphs import DenseGraph
    from espnet_otreg.ot.gromov import QuadraticProblem, quadratic_gradient
    from espnet_otreg.ot.problem import prepare

    def _quad_grad(cx, cy, cx2, cy2, P, m, n, symmetric):
        # tau set: the linearisation uses the plan's own marginals m, n
        g = lambda c: DenseGraph(c, symmetric)  # noqa: E731
        qp = QuadraticProblem(prepare(P, None, None, None, None), g(cx), g(cy), g(cx2), g(cy2),
                              alpha=0.5, tau=1.0, symmetric=symmetric)
        return quadratic_gradient(qp, P)

    g = torch.Generator().manual_seed(4)
    cx, cy = torch.rand(2, 5, 5, generator=g, dtype=torch.float64), torch.rand(2, 3, 3, generator=g, dtype=torch.float64)
    P = torch.rand(2, 5, 3, generator=g, dtype=torch.float64)
    m, n = P.sum(-1), P.sum(-2)
    L = (cx[:, :, None, :, None] - cy[:, None, :, None, :]) ** 2  # (B, i, j, k, l)
    want = torch.einsum("bijkl,bkl->bij", L, P) + torch.einsum("bklij,bkl->bij", L, P)
    got = _quad_grad(cx, cy, cx * cx, cy * cy, P, m, n, symmetric=False)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    sym_x, sym_y = cx + cx.transpose(1, 2), cy + cy.transpose(1, 2)
    L = (sym_x[:, :, None, :, None] - sym_y[:, None, :, None, :]) ** 2
    want = 2 * torch.einsum("bijkl,bkl->bij", L, P)
    got = _quad_grad(sym_x, sym_y, sym_x ** 2, sym_y ** 2, P, m, n, symmetric=True)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("early_stop,inner", [(False, 10), (True, 2)])
def test_warm_start_over_a_moved_kernel_stays_finite(dtype, early_stop, inner):
    """Small epsilon and a large alpha move the kernel by hundreds between outer steps:
    a warm start without a log-domain step overflows, the pair is undone, and it must
    still leave the inner loop with a finite plan for the new kernel."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 12, 3, generator=g, dtype=dtype)
    y = torch.randn(4, 9, 3, generator=g, dtype=dtype)
    C, cx, cy = torch.cdist(x, y), torch.cdist(x, x), torch.cdist(y, y)
    for eps in (0.01, 0.003):
        res = fused_gromov_wasserstein(C, cx, cy, epsilon=eps, alpha=0.9, max_iter=10,
                                       inner_max_iter=inner, early_stop=early_stop, tol=1e-6)
        for t in (res.plan, res.value, res.value_linear, res.value_quadratic):
            assert torch.isfinite(t).all(), (eps, t)


def test_garbage_on_structure_padding_is_ignored():
    """Finite garbage (even 1e20, whose square overflows float32) on the padding of the
    structure matrices changes nothing."""
    C, Cx, Cy, xm, ym = _problem(dtype=torch.float32, seed=5)
    pad_x = ~(xm[:, :, None] & xm[:, None, :])
    pad_y = ~(ym[:, :, None] & ym[:, None, :])
    kw = dict(alpha=0.5, epsilon=0.1, max_iter=20, inner_max_iter=200, tol=1e-7)
    clean = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, **kw)
    for junk in (1e3, 1e20):
        dirty = fused_gromov_wasserstein(C, Cx.masked_fill(pad_x, junk), Cy.masked_fill(pad_y, -junk),
                                         xm, ym, **kw)
        torch.testing.assert_close(dirty.plan, clean.plan, atol=1e-7, rtol=0)
        torch.testing.assert_close(dirty.value, clean.value, atol=1e-6, rtol=0)


def test_alpha_zero_is_plain_sinkhorn():
    C, Cx, Cy, xm, ym = _problem(seed=3)
    fgw = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=0.0, epsilon=0.1, tol=1e-12,
                                   inner_max_iter=5000)
    ref = sinkhorn(C, xm, ym, epsilon=0.1, tol=1e-12, max_iter=5000)
    torch.testing.assert_close(fgw.plan, ref.plan, atol=1e-11, rtol=0)
    torch.testing.assert_close(fgw.value, ref.value, atol=1e-10, rtol=0)


@pytest.mark.parametrize("tau", [(0.3, None), (None, 0.3)])
def test_one_sided_unbalanced_fgw_is_a_fixed_point(tau):
    """One-sided unbalanced FGW (tau = (tau_a, tau_b), None = hard): the hard side holds
    its marginal, the relaxed one does not; the plan solves the one-sided Sinkhorn on
    its own linearised cost (einsum, with the plan's own marginals); and the internal
    swap of the longer side (N > M in most pairs here) carries tau with it."""
    C, Cx, Cy, xm, ym = _problem(seed=7)
    alpha, eps = 0.5, 0.1
    kw = dict(alpha=alpha, epsilon=eps, tau=tau, max_iter=200, inner_max_iter=2000,
              tol=1e-11)
    res = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, **kw)
    assert res.converged.all()
    a = xm.double() / xm.sum(-1, keepdim=True)
    b = ym.double() / ym.sum(-1, keepdim=True)
    hard, relaxed = ((res.plan.sum(-1), a), (res.plan.sum(-2), b))[:: 1 if tau[0] is None else -1]
    torch.testing.assert_close(*hard, atol=1e-9, rtol=0)
    assert float((relaxed[0] - relaxed[1]).abs().sum()) > 1e-3
    L = (Cx[:, :, None, :, None] - Cy[:, None, :, None, :]) ** 2  # (B, i, j, k, l)
    G = (1 - alpha) * C + alpha * 2 * torch.einsum("bijkl,bkl->bij", L, res.plan)
    again = sinkhorn(G, xm, ym, epsilon=eps, tau=tau, max_iter=20000, tol=1e-13)
    torch.testing.assert_close(again.plan, res.plan, atol=1e-8, rtol=0)
    flipped = fused_gromov_wasserstein(C.transpose(1, 2), Cy, Cx, ym, xm,
                                       **{**kw, "tau": tau[::-1]})
    torch.testing.assert_close(flipped.plan.transpose(1, 2), res.plan, atol=1e-9, rtol=0)


def test_small_epsilon_limit_matches_exact_fgw():
    """On a relabelled graph the exact FGW optimum is the permutation, value 0."""
    n = 7
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, n, 3, generator=g, dtype=torch.float64)
    perm = torch.randperm(n, generator=g)
    y = x[:, perm]
    Cx, Cy = structure(x, metric="sqeuclidean"), structure(y, metric="sqeuclidean")
    C = torch.cdist(x, y) ** 2
    scale = max(Cx.max(), C.max())
    C, Cx, Cy = C / scale, Cx / scale, Cy / scale
    P_exact, log = ot.gromov.fused_gromov_wasserstein(
        C[0].numpy(), Cx[0].numpy(), Cy[0].numpy(), unif(n), unif(n), alpha=0.5, log=True)
    res = fused_gromov_wasserstein(C, Cx, Cy, alpha=0.5, epsilon=0.005, max_iter=30,
                                   inner_max_iter=500, tol=1e-7)
    assert float(log["fgw_dist"]) == pytest.approx(0.0, abs=1e-10)
    np.testing.assert_allclose(res.plan[0].numpy(), P_exact, atol=1e-4)
    fgw = 0.5 * res.value_linear + 0.5 * res.value_quadratic
    assert fgw.item() == pytest.approx(float(log["fgw_dist"]), abs=1e-4)


def test_envelope_gradients_match_finite_differences():
    C, Cx, Cy, xm, ym = _problem(seed=4)
    C, Cx, Cy = (t[:2].clone().requires_grad_(True) for t in (C, Cx, Cy))
    xm, ym = xm[:2], ym[:2]
    kw = dict(alpha=0.3, epsilon=0.2, max_iter=3000, inner_max_iter=5000, tol=1e-14)
    res = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, **kw)
    res.value.sum().backward()
    torch.testing.assert_close(C.grad, 0.7 * res.plan, atol=1e-14, rtol=0)
    h = 1e-6

    def value(Cv, Cxv, Cyv, b):
        return fused_gromov_wasserstein(Cv, Cxv, Cyv, xm, ym, grad="detach", **kw).value[b]

    for which, grad, idx in [("C", C.grad, (0, 1, 2)), ("Cx", Cx.grad, (0, 1, 3)),
                             ("Cy", Cy.grad, (1, 0, 1))]:
        plus = [t.detach().clone() for t in (C, Cx, Cy)]
        minus = [t.detach().clone() for t in (C, Cx, Cy)]
        k = ["C", "Cx", "Cy"].index(which)
        plus[k][idx] += h
        minus[k][idx] -= h
        fd = (value(*plus, idx[0]) - value(*minus, idx[0])) / (2 * h)
        assert fd.item() == pytest.approx(grad[idx].item(), abs=1e-6), which


def test_autodiff_gradcheck():
    xm = lengths_to_mask([3, 2], 3)
    ym = lengths_to_mask([2, 2], 2)
    g = torch.Generator().manual_seed(1)
    C = torch.rand(2, 3, 2, generator=g, dtype=torch.float64)
    Cx = torch.rand(2, 3, 3, generator=g, dtype=torch.float64)
    Cy = torch.rand(2, 2, 2, generator=g, dtype=torch.float64)
    Cx, Cy = (Cx + Cx.transpose(1, 2)) / 2, (Cy + Cy.transpose(1, 2)) / 2

    def fn(C, Cx, Cy):
        r = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=0.4, epsilon=0.3, max_iter=3,
                                     inner_max_iter=10, tol=0.0, grad="autodiff")
        return r.value, r.plan

    assert torch.autograd.gradcheck(fn, tuple(t.requires_grad_(True) for t in (C, Cx, Cy)))


def test_warm_start_reaches_the_same_plan_with_fewer_inner_iterations():
    C, Cx, Cy, xm, ym = _problem(dtype=torch.float32, seed=5)
    ref = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=0.5, epsilon=0.1, max_iter=50,
                                   inner_max_iter=1000, tol=1e-7, warm_start=False)
    fast = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=0.5, epsilon=0.1, max_iter=50,
                                    inner_max_iter=10, tol=1e-7, warm_start=True)
    torch.testing.assert_close(fast.plan, ref.plan, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tau", [None, 1.0])
@pytest.mark.parametrize("case", ["length_one", "tiny_eps_large_cost", "constant", "bf16"])
def test_numerically_safe_and_empty_pair(case, tau):
    xm = lengths_to_mask([5, 1, 0, 4], 5)
    ym = lengths_to_mask([4, 3, 2, 1], 4)
    x, y = torch.randn(4, 5, 3), torch.randn(4, 4, 3)
    C, Cx, Cy, eps = torch.rand(4, 5, 4), structure(x, xm), structure(y, ym), 0.1
    if case == "tiny_eps_large_cost":
        C, eps = C * 1e3, 0.01
    elif case == "constant":
        C, Cx, Cy = torch.ones_like(C), torch.ones_like(Cx), torch.ones_like(Cy)
    elif case == "bf16":
        C, Cx, Cy = C.bfloat16(), Cx.bfloat16(), Cy.bfloat16()
    C.requires_grad_(True)
    res = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, alpha=0.5, epsilon=eps, tau=tau)
    for t in (res.plan, res.value, res.value_linear, res.value_quadratic):
        assert torch.isfinite(t).all(), case
    assert (res.plan[2] == 0).all() and res.value[2] == 0
    res.value.sum().backward()
    assert torch.isfinite(C.grad).all()


def test_unbalanced_tends_to_balanced_for_large_tau():
    C, Cx, Cy, xm, ym = _problem(seed=6)
    kw = dict(alpha=0.5, epsilon=0.1, max_iter=100, inner_max_iter=2000, tol=1e-9)
    bal = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, **kw)
    unb = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, tau=1e4, **kw)
    torch.testing.assert_close(unb.plan, bal.plan, atol=1e-4, rtol=0)
    loose = fused_gromov_wasserstein(C, Cx, Cy, xm, ym, tau=0.05, **kw)
    assert (loose.plan.sum((1, 2)) < bal.plan.sum((1, 2)) + 1e-9).all()


def test_bad_input_errors():
    C, Cx, Cy = torch.rand(2, 4, 3), torch.rand(2, 4, 4), torch.rand(2, 3, 3)
    with pytest.raises(ValueError, match=r"c_x must have shape \(2, 4, 4\)"):
        fused_gromov_wasserstein(C, Cx[:, :3, :3], Cy)
    with pytest.raises(ValueError, match="c_y must have shape"):
        fused_gromov_wasserstein(C, Cx, Cx)
    with pytest.raises(ValueError, match="alpha"):
        fused_gromov_wasserstein(C, Cx, Cy, alpha=1.5)
    with pytest.raises(ValueError, match="alpha = 1"):
        fused_gromov_wasserstein(None, Cx, Cy, alpha=0.5)
    with pytest.raises(ValueError, match="init_plan"):
        fused_gromov_wasserstein(C, Cx, Cy, init_plan=torch.rand(2, 3, 3))
    r = fused_gromov_wasserstein(None, Cx, Cy, alpha=1.0)
    assert torch.isfinite(r.value).all()
