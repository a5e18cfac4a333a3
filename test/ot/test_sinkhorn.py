"""Sinkhorn vs POT, pair by pair, on padded batches with mixed lengths."""


import numpy as np
import ot
import pytest
import torch

from espnet_otreg.ot import sinkhorn
from ot_helpers import lengths_to_mask, pairs, random_batch, unif

X_LENS = [9, 5, 1, 7, 3]
Y_LENS = [6, 2, 1, 6, 4]


def _kl(p, q):
    p, q = np.asarray(p), np.asarray(q)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / q[nz])).sum() - p.sum() + q.sum())


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("epsilon", [0.05, 0.5])
def test_balanced_matches_pot(dtype, atol, epsilon):
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, dtype=dtype)
    res = sinkhorn(C, xm, ym, epsilon=epsilon, max_iter=20000, tol=2e-6 if dtype == torch.float32 else 1e-12)
    assert res.converged.all()
    assert res.plan.dtype == dtype
    for b, n, m in pairs(xm, ym):
        Cb = C[b, :n, :m].double().numpy()
        P = ot.sinkhorn(unif(n), unif(m), Cb, epsilon, method="sinkhorn_log",
                        numItermax=100000, stopThr=1e-14)
        np.testing.assert_allclose(res.plan[b, :n, :m].double().numpy(), P, atol=atol, rtol=0)
        assert float(res.plan[b, n:].abs().sum() + res.plan[b, :, m:].abs().sum()) == 0.0
        # value = <C, P> + eps KL(P | a b^T), value_linear = POT's sinkhorn2
        lin = float((Cb * P).sum())
        ref = lin + epsilon * _kl(P.ravel(), np.outer(unif(n), unif(m)).ravel())
        assert res.value_linear[b].item() == pytest.approx(lin, abs=10 * atol)
        assert res.value[b].item() == pytest.approx(ref, abs=10 * atol)


@pytest.mark.parametrize("method", ["stabilized", "log"])
@pytest.mark.parametrize("tau", [0.05, 1.0, 50.0])
def test_unbalanced_matches_pot_with_unequal_masses(tau, method):
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, dtype=torch.float64, seed=1)
    g = torch.Generator().manual_seed(3)
    a = torch.rand(xm.shape, generator=g, dtype=torch.float64) * xm
    b = 2.0 * torch.rand(ym.shape, generator=g, dtype=torch.float64) * ym
    eps = 0.1
    res = sinkhorn(C, xm, ym, epsilon=eps, a=a, b=b, tau=tau, max_iter=20000, tol=1e-13,
                  method=method)
    assert res.converged.all()
    for bi, n, m in pairs(xm, ym):
        an, bm = a[bi, :n].numpy(), b[bi, :m].numpy()
        Cb = C[bi, :n, :m].numpy()
        P = ot.unbalanced.sinkhorn_unbalanced(an, bm, Cb, eps, tau, numItermax=200000, stopThr=1e-15)
        np.testing.assert_allclose(res.plan[bi, :n, :m].numpy(), P, atol=1e-10, rtol=0)
        ref = ((Cb * P).sum() + eps * _kl(P.ravel(), np.outer(an, bm).ravel())
               + tau * _kl(P.sum(1), an) + tau * _kl(P.sum(0), bm))
        assert res.value[bi].item() == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("method", ["stabilized", "log"])
@pytest.mark.parametrize("tau,reg_m", [((0.5, None), (0.5, np.inf)),
                                       ((None, 0.2), (np.inf, 0.2)),
                                       ((0.3, float("inf")), (0.3, np.inf)),
                                       ((0.3, 2.0), (0.3, 2.0))])
def test_one_sided_unbalanced_matches_pot(tau, reg_m, method):
    """tau = (tau_a, tau_b), None (or inf) on a hard side: POT's reg_m pair with inf."""
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, dtype=torch.float64, seed=4)
    g = torch.Generator().manual_seed(5)
    a = (torch.rand(xm.shape, generator=g, dtype=torch.float64) + 0.1) * xm
    b = 2.0 * (torch.rand(ym.shape, generator=g, dtype=torch.float64) + 0.1) * ym
    eps = 0.1
    res = sinkhorn(C, xm, ym, epsilon=eps, a=a, b=b, tau=tau, max_iter=20000, tol=1e-13,
                   method=method)
    assert res.converged.all()
    for bi, n, m in pairs(xm, ym):
        an, bm, Cb = a[bi, :n].numpy(), b[bi, :m].numpy(), C[bi, :n, :m].numpy()
        P = ot.unbalanced.sinkhorn_unbalanced(an, bm, Cb, eps, reg_m, numItermax=200000,
                                              stopThr=1e-15)
        np.testing.assert_allclose(res.plan[bi, :n, :m].numpy(), P, atol=1e-10, rtol=0)
        ref = (Cb * P).sum() + eps * _kl(P.ravel(), np.outer(an, bm).ravel())
        for t, marg, w in zip(reg_m, (P.sum(1), P.sum(0)), (an, bm)):
            if np.isinf(t):  # the hard side holds its marginal
                np.testing.assert_allclose(marg, w, atol=1e-10, rtol=0)
            else:
                ref += t * _kl(marg, w)
        assert res.value[bi].item() == pytest.approx(ref, abs=1e-9)


def test_tau_pair_of_equal_values_is_tau():
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, dtype=torch.float64, seed=6)
    one = sinkhorn(C, xm, ym, epsilon=0.1, tau=0.7, tol=1e-12, max_iter=5000)
    two = sinkhorn(C, xm, ym, epsilon=0.1, tau=(0.7, 0.7), tol=1e-12, max_iter=5000)
    hard = sinkhorn(C, xm, ym, epsilon=0.1, tau=(None, None), tol=1e-12, max_iter=5000)
    bal = sinkhorn(C, xm, ym, epsilon=0.1, tol=1e-12, max_iter=5000)
    torch.testing.assert_close(one.plan, two.plan, atol=0, rtol=0)
    torch.testing.assert_close(hard.plan, bal.plan, atol=0, rtol=0)


@pytest.mark.parametrize("tau", [(0.5,), (0.5, 0.5, 0.5), (-1.0, None), (None, 0.0), "a"])
def test_bad_tau_is_a_clear_error(tau):
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, seed=0)
    with pytest.raises((ValueError, TypeError), match="tau"):
        sinkhorn(C, xm, ym, tau=tau)


def test_user_marginals_balanced():
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, seed=2)
    a = torch.rand(xm.shape, dtype=torch.float64) * xm + 1e-3 * xm
    b = torch.rand(ym.shape, dtype=torch.float64) * ym + 1e-3 * ym
    a = a / a.sum(-1, keepdim=True)
    b = b / b.sum(-1, keepdim=True)
    res = sinkhorn(C, xm, ym, epsilon=0.1, a=a, b=b, max_iter=20000, tol=1e-12)
    torch.testing.assert_close(res.plan.sum(-1), a, atol=1e-11, rtol=0)
    torch.testing.assert_close(res.plan.sum(-2), b, atol=1e-11, rtol=0)


def test_pair_alone_equals_pair_in_padded_batch():
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, seed=4)
    batch = sinkhorn(C, xm, ym, epsilon=0.1, tol=1e-12, max_iter=5000)
    for b, n, m in pairs(xm, ym):
        alone = sinkhorn(C[b : b + 1, :n, :m].clone(), epsilon=0.1, tol=1e-12, max_iter=5000)
        torch.testing.assert_close(batch.plan[b, :n, :m], alone.plan[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(batch.f[b, :n], alone.f[0], atol=1e-9, rtol=0)


def test_padding_and_empty_pair_stay_finite():
    C = torch.rand(3, 4, 5)
    xm = lengths_to_mask([4, 0, 2], 4)
    ym = lengths_to_mask([5, 3, 0], 5)
    for tau in (None, 1.0):
        res = sinkhorn(C, xm, ym, epsilon=0.1, tau=tau)
        for t in (res.plan, res.value, res.value_linear):
            assert torch.isfinite(t).all()
        assert (res.plan[1:] == 0).all() and (res.value[1:] == 0).all()
        assert res.converged.all()
        assert torch.isneginf(res.f[1]).all() and torch.isneginf(res.g[2]).all()


@pytest.mark.parametrize("method", ["stabilized", "log"])
@pytest.mark.parametrize("tau", [None, 0.5])
@pytest.mark.parametrize(
    "case",
    ["length_one", "tiny_eps_large_cost", "constant_cost", "bf16", "fp16"],
)
def test_numerically_safe(case, tau, method):
    xm = lengths_to_mask([6, 1, 4], 6)
    ym = lengths_to_mask([5, 3, 1], 5)
    C, eps = torch.rand(3, 6, 5), 0.1
    if case == "tiny_eps_large_cost":
        C, eps = C * 1e3, 0.01
    elif case == "constant_cost":
        C = torch.full((3, 6, 5), 7.0)
    elif case in ("bf16", "fp16"):
        C = C.to(torch.bfloat16 if case == "bf16" else torch.float16)
    C.requires_grad_(True)
    res = sinkhorn(C, xm, ym, epsilon=eps, tau=tau, max_iter=2000, method=method)
    assert res.plan.dtype == torch.float32
    for t in (res.plan, res.value, res.value_linear, res.error):
        assert torch.isfinite(t).all(), case
    res.value.sum().backward()
    assert torch.isfinite(C.grad).all()
    assert (res.plan >= 0).all()
    a = xm / xm.sum(-1, keepdim=True)
    if case == "tiny_eps_large_cost":
        # cost/epsilon = 1e5 is nearly unregularised OT: Sinkhorn needs ~1e5 iterations
        # and float32 resolves the plan to ~1e-2 at best. We ask for a finite, valid
        # plan of the right mass, not for convergence.
        if tau is None:
            torch.testing.assert_close(res.plan.sum((1, 2)), torch.ones(3), atol=1e-2, rtol=0)
    elif tau is None:
        torch.testing.assert_close(res.plan.sum(-1), a.float(), atol=1e-4, rtol=0)
    if case == "constant_cost" and tau is None:
        # Constant cost: the plan is the independent coupling a b^T.
        b = ym / ym.sum(-1, keepdim=True)
        torch.testing.assert_close(res.plan, (a[:, :, None] * b[:, None, :]).float(), atol=1e-6, rtol=0)


def test_envelope_gradient_is_plan_and_matches_finite_differences():
    _, _, xm, ym, C = random_batch([5, 3], [4, 2], dtype=torch.float64, seed=5)
    eps = 0.2
    C = C.clone().requires_grad_(True)
    res = sinkhorn(C, xm, ym, epsilon=eps, tol=1e-14, max_iter=20000)
    res.value.sum().backward()
    torch.testing.assert_close(C.grad, res.plan, atol=1e-14, rtol=0)
    h = 1e-6
    for b, i, j in [(0, 0, 0), (0, 4, 3), (1, 2, 1)]:
        Cp, Cm = C.detach().clone(), C.detach().clone()
        Cp[b, i, j] += h
        Cm[b, i, j] -= h
        vp = sinkhorn(Cp, xm, ym, epsilon=eps, tol=1e-14, max_iter=20000, grad="detach").value[b]
        vm = sinkhorn(Cm, xm, ym, epsilon=eps, tol=1e-14, max_iter=20000, grad="detach").value[b]
        assert ((vp - vm) / (2 * h)).item() == pytest.approx(C.grad[b, i, j].item(), abs=1e-7)


@pytest.mark.parametrize("tau", [None, 0.7])
def test_autodiff_gradcheck(tau):
    xm = lengths_to_mask([3, 2], 3)
    ym = lengths_to_mask([2, 2], 2)
    C0 = torch.rand(2, 3, 2, dtype=torch.float64)

    def fn(C):
        # tol=0: a fixed number of iterations, so the function is smooth.
        r = sinkhorn(C, xm, ym, epsilon=0.3, tau=tau, max_iter=15, tol=0.0, grad="autodiff")
        return r.value, r.plan

    assert torch.autograd.gradcheck(fn, (C0.requires_grad_(True),))


@pytest.mark.parametrize("tau", [None, 0.3])
def test_stabilized_and_log_give_the_same_iterates(tau):
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, seed=8)
    for iters in (1, 7, 10, 23):
        kw = dict(epsilon=0.05, tau=tau, max_iter=iters, tol=0.0, check_every=10)
        fast, slow = sinkhorn(C, xm, ym, **kw), sinkhorn(C, xm, ym, method="log", **kw)
        torch.testing.assert_close(fast.plan, slow.plan, atol=1e-12, rtol=0)


def test_scaling_segment_undoes_a_pair_whose_scalings_leave_float_range():
    from espnet_otreg.ot.kernel import SAFE_MAX, SAFE_MIN, Kernel
    from espnet_otreg.ot.problem import prepare

    K = torch.zeros(2, 3, 2)
    problem = prepare(K, None, None, None, None)  # uniform marginals
    u, v = torch.zeros(2, 3), torch.zeros(2, 2)
    u[1, 0] = -1e4  # row 0 of pair 1 underflows: E row = 0, its scaling = inf
    for phi in (None, 0.9):
        E = Kernel.from_cost(problem, 1.0, phi).absorb(u, v)
        s_u, s_v = E.unit_scalings()
        rows = E.rows(s_v)
        for _ in range(3):
            s_prev = s_u
            s_u = E.update_u(rows)
            s_v = E.update_v(E.cols(s_u))
            rows = E.rows(s_v)
        err = E.error(s_u, s_prev, rows)
        lo, hi = E.extremes(s_u, s_v)
        assert not (SAFE_MIN < lo and hi < SAFE_MAX)  # the loop folds back and repairs
        assert torch.isfinite(err[0]) and not torch.isfinite(err[1])
        nu, nv, ok = E.fold(s_u, s_v, check=True)
        assert ok.tolist() == [True, False]
        assert torch.equal(nu[1], u[1]) and torch.equal(nv[1], v[1])  # undone
        assert not torch.equal(nu[0], u[0])  # the healthy pair moved
        assert torch.isfinite(nu[0]).all() and torch.isfinite(nv[0]).all()


def test_far_scalings_are_absorbed_and_the_iterates_stay_exact(monkeypatch):
    """Large costs at small epsilon move the potentials by thousands within a few
    iterations: the loop folds the scalings back into the potentials (new segments)
    and its iterates stay those of the pure log-domain method, NaN-free."""
    from espnet_otreg.ot.kernel import Kernel

    starts = []
    absorb = Kernel.absorb
    monkeypatch.setattr(Kernel, "absorb", lambda self, u, v: starts.append(1) or absorb(self, u, v))
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, seed=9)
    for tau in (None, 1.0):
        starts.clear()
        kw = dict(epsilon=0.01, tau=tau, max_iter=200, tol=0.0, check_every=5)
        res, slow = sinkhorn(C * 100, xm, ym, **kw), sinkhorn(C * 100, xm, ym, method="log", **kw)
        assert len(starts) > 1  # scalings were absorbed before the end
        assert torch.isfinite(res.plan).all() and torch.isfinite(res.value).all()
        torch.testing.assert_close(res.plan, slow.plan, atol=1e-9, rtol=0)


def test_grad_modes():
    C = torch.rand(2, 4, 3, requires_grad=True)
    assert not sinkhorn(C, grad="detach").value.requires_grad
    r = sinkhorn(C, grad="envelope")
    assert r.value.requires_grad and not r.plan.requires_grad
    r = sinkhorn(C, grad="autodiff")
    assert r.value.requires_grad and r.plan.requires_grad


def test_warm_start_needs_fewer_iterations():
    _, _, xm, ym, C = random_batch(X_LENS, Y_LENS, seed=6)
    cold = sinkhorn(C, xm, ym, epsilon=0.05, tol=1e-10, max_iter=10000, check_every=1)
    warm = sinkhorn(C + 1e-3 * torch.rand_like(C), xm, ym, epsilon=0.05, tol=1e-10, max_iter=10000, check_every=1,
                    init=(cold.f, cold.g))
    assert warm.converged.all()
    assert int(warm.n_iter.max()) < int(cold.n_iter.max()) // 2


def test_n_iter_and_converged_per_pair():
    _, _, xm, ym, C = random_batch([8, 8], [6, 6], seed=7)
    C[1] = C[1] * 20  # a harder pair
    res = sinkhorn(C, xm, ym, epsilon=0.05, tol=1e-9, max_iter=5000, check_every=5)
    assert res.converged.all() and (res.error <= 1e-9).all()
    assert res.n_iter[0] < res.n_iter[1]
    capped = sinkhorn(C, xm, ym, epsilon=0.05, tol=1e-9, max_iter=3, check_every=5)
    assert not capped.converged.any() and (capped.n_iter == 3).all()


def test_no_host_sync_without_early_stop(monkeypatch):
    """With early_stop=False the solver never reads a tensor back to the host."""
    C = torch.rand(4, 7, 5)
    xm = lengths_to_mask([7, 3, 1, 0], 7)
    ym = lengths_to_mask([5, 5, 2, 2], 5)

    def boom(*_a, **_k):
        raise AssertionError("host sync inside the solver")

    for name in ("item", "__bool__", "tolist", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, boom)
    for tau in (None, 1.0):
        for method in ("stabilized", "log"):
            res = sinkhorn(C, xm, ym, epsilon=0.1, tau=tau, max_iter=50, early_stop=False,
                           method=method)
    monkeypatch.undo()
    assert torch.isfinite(res.value).all()


def test_bad_input_errors():
    C = torch.rand(2, 4, 3)
    with pytest.raises(ValueError, match=r"\(B, N, M\).*cost\[None\]"):
        sinkhorn(torch.rand(4, 3))
    with pytest.raises(ValueError, match="x_mask must have shape"):
        sinkhorn(C, x_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        sinkhorn(C, y_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(C, epsilon=0.0)
    with pytest.raises(ValueError, match="tau"):
        sinkhorn(C, tau=-1.0)
    with pytest.raises(ValueError, match="grad"):
        sinkhorn(C, grad="implicit")
    with pytest.raises(ValueError, match="method"):
        sinkhorn(C, method="sinkhorn_knopp")
    with pytest.raises(ValueError, match="non-negative"):
        sinkhorn(C, a=-torch.ones(2, 4))
    with pytest.raises(ValueError, match="b must have shape"):
        sinkhorn(C, b=torch.ones(2, 4))
    with pytest.raises(ValueError, match="init potentials"):
        sinkhorn(C, init=(torch.zeros(2, 3), torch.zeros(2, 3)))
