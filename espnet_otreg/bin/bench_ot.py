"""Benchmark our batched OT solvers against POT, on identical inputs, in one run.

    python -m espnet_otreg.bin.bench_ot                 # CPU, reference + large batch
    python -m espnet_otreg.bin.bench_ot --device cuda   # on a GPU
    python -m espnet_otreg.bin.bench_ot --quick         # tiny sizes (CI smoke test)

For each batch it times, forward and forward+backward:

- Sinkhorn (eps 0.1, costs scaled to max 1 per pair): ours on the padded batch vs
  POT's ``sinkhorn_log`` looped over pairs (numpy and torch backends, same float32
  inputs), both with 50 iterations; ours with early
  stopping at ``tol``; ``ot.batch.solve_batch`` and ours on a same-length copy of the
  batch (``ot.batch`` has no masks).
- Entropic FGW (alpha 0.5): ours 10 outer x 50 inner vs POT's
  ``entropic_fused_gromov_wasserstein`` looped over pairs (10 x 50), ours 10 x 10 with
  warm-started inner loops, and ``ot.batch.solve_gromov_batch`` (same-length copy).
  At the same tolerance: 10 outer steps whose inner Sinkhorn runs until the marginal
  error is <= 1e-5, ours (warm-started) vs POT's loop (cold, its default, and with
  ``warmstart=True``).

- Windowed FGW (GM-OT's ``ws`` = 5): ours on banded structures, both window modes
  (``zero``: an absent edge costs 0; ``masked``: absent edges leave the sum), 10 x 50
  and inner to tol 1e-5, vs POT's dense per-pair loop on the dense windowed matrices
  (zero semantics; POT has no masked reading), and ours on the dense windowed matrices.
  Their forward rows solve precomputed costs, like POT's rows (the older FGW rows
  "ours, batched" build the costs inside the timed forward).
- Costs: ``sqeuclidean`` and ``cosine`` forward+backward vs their floor, the three
  batched products ``x y^T``, ``G y``, ``G^T x``, and vs plain autograd.

Every row also shows its accuracy: the largest L1 marginal error over pairs, and the
largest plan-entry difference from a float64 reference (Sinkhorn: converged; FGW: the
same 10 outer steps with converged inner problems). Peak memory is the peak tensor
memory of the call (CUDA allocator on GPU, the profiler's allocation trace on CPU).
It prints a table, then one JSON line with the ratios (POT time / our time).
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from typing import Dict, List

import torch

from espnet_otreg.bench.timing import peak_mb, time_ms
from espnet_otreg.ot import costs, fused_gromov_wasserstein, lengths_to_mask, sinkhorn

EPS = 0.1
ALPHA = 0.5
SINKHORN_ITERS = 50
FGW_OUTER, FGW_INNER, FGW_INNER_WARM = 10, 50, 10
# "Same tolerance": every inner Sinkhorn runs until its marginal error is <= FGW_TOL
# (at most FGW_INNER_MAX iterations), for POT and for us.
FGW_TOL, FGW_INNER_MAX = 1e-5, 1000
# GM-OT's window: structures banded (B, L, 2 WS + 1) for us, dense windowed for POT.
WS = 5


# ----------------------------------------------------------------------------- data
def make_batch(B, n_range, m_range, dim, device, seed=0, same_length=False):
    """Random features with mixed lengths, sqeuclidean costs scaled to max 1 per pair."""
    g = torch.Generator().manual_seed(seed)
    N, M = n_range[1], m_range[1]
    if same_length:
        xl = torch.full((B,), N)
        yl = torch.full((B,), M)
    else:
        xl = torch.randint(n_range[0], N + 1, (B,), generator=g)
        yl = torch.randint(m_range[0], M + 1, (B,), generator=g)
    x = torch.randn(B, N, dim, generator=g)
    y = torch.randn(B, M, dim, generator=g)
    xm, ym = lengths_to_mask(xl, N), lengths_to_mask(yl, M)
    return dict(x=x.to(device), y=y.to(device), xm=xm.to(device), ym=ym.to(device))


def _scaled(c):
    return c / c.amax((1, 2), keepdim=True).clamp_min(1e-12)


def leaf_features(batch):
    """Fresh copies of the features that require grad (for fwd+bwd timings)."""
    return tuple(batch[k].detach().requires_grad_(True) for k in ("x", "y"))


def problem(batch, x=None, y=None):
    """Cost and structures from (possibly grad-requiring) features."""
    x = batch["x"] if x is None else x
    y = batch["y"] if y is None else y
    xm, ym = batch["xm"], batch["ym"]
    C = _scaled(costs.sqeuclidean(x, y, xm, ym))
    Cx = _scaled(costs.structure(x, xm, "sqeuclidean"))
    Cy = _scaled(costs.structure(y, ym, "sqeuclidean"))
    return C, Cx, Cy


def problem_windowed(batch, x=None, y=None, ws=WS, banded=True):
    """Cost and windowed structures (bands with ``banded``, else dense (L, L) with
    zeros outside the window), each scaled to max 1 per pair like :func:`problem`."""
    x = batch["x"] if x is None else x
    y = batch["y"] if y is None else y
    xm, ym = batch["xm"], batch["ym"]
    C = _scaled(costs.sqeuclidean(x, y, xm, ym))
    Cx = _scaled(costs.structure(x, xm, "sqeuclidean", window=ws, banded=banded))
    Cy = _scaled(costs.structure(y, ym, "sqeuclidean", window=ws, banded=banded))
    return C, Cx, Cy


# ----------------------------------------------------------------------------- accuracy
def marginal_error(plans: List[torch.Tensor], batch) -> float:
    worst = 0.0
    for b, P in enumerate(plans):
        n, m = P.shape
        if n == 0 or m == 0:
            continue
        P = P.double()
        worst = max(worst, float((P.sum(1) - 1.0 / n).abs().sum() + (P.sum(0) - 1.0 / m).abs().sum()))
    return worst


def plan_error(plans: List[torch.Tensor], ref: List[torch.Tensor]) -> float:
    return max(float((p.double().cpu() - r).abs().max()) for p, r in zip(plans, ref))


def unpad(plan: torch.Tensor, batch) -> List[torch.Tensor]:
    xl, yl = batch["xm"].sum(-1).tolist(), batch["ym"].sum(-1).tolist()
    return [plan[b, :n, :m].detach().cpu() for b, (n, m) in enumerate(zip(xl, yl))]


def pot_pairs(batch, C, Cx, Cy):
    xl, yl = batch["xm"].sum(-1).tolist(), batch["ym"].sum(-1).tolist()
    out = []
    for b, (n, m) in enumerate(zip(xl, yl)):
        out.append((n, m, C[b, :n, :m], Cx[b, :n, :n], Cy[b, :m, :m]))
    return out


def numpy_pairs(pairs):
    """The same per-pair inputs as numpy arrays (POT's fastest forward path)."""
    return [(n, m) + tuple(t.cpu().numpy() for t in ts) for n, m, *ts in pairs]


def pot_sinkhorn(pairs):
    """POT's log-domain Sinkhorn, one call per pair of ``(n, m, C)``: the plans."""
    import ot

    return [ot.sinkhorn(ot.unif(n, type_as=c), ot.unif(m, type_as=c), c, EPS,
                        method="sinkhorn_log", numItermax=SINKHORN_ITERS, stopThr=0.0)
            for n, m, c in pairs]


def pot_fgw(pairs, inner=FGW_INNER, stop=0.0, warmstart=False):
    """POT's entropic FGW, one call per pair of ``(n, m, C, Cx, Cy)``, FGW_OUTER outer
    iterations of ``inner`` Sinkhorn iterations (fewer with ``stop`` > 0): the plans."""
    import ot

    return [ot.gromov.entropic_fused_gromov_wasserstein(
        c, cx, cy, ot.unif(n, type_as=c), ot.unif(m, type_as=c), epsilon=EPS, alpha=ALPHA,
        max_iter=FGW_OUTER, tol=0.0, numItermax=inner, stopThr=stop, symmetric=True,
        warmstart=warmstart) for n, m, c, cx, cy in pairs]


def pot_fgw_backward(pairs):
    """The sum of POT's FGW values over the pairs (torch inputs), backpropagated."""
    import ot

    total = 0
    for n, m, c, cx, cy in pairs:
        total = total + ot.gromov.entropic_fused_gromov_wasserstein2(
            c, cx, cy, epsilon=EPS, alpha=ALPHA, max_iter=FGW_OUTER, tol=0.0,
            numItermax=FGW_INNER, stopThr=0.0, symmetric=True)
    total.backward()


def pot_fgw_rows(row, key, prefix, pairs_t, backward, ref, kind="", warm_tol=False):
    """The POT rows of an FGW table: its per-pair loop on numpy inputs (fixed
    iterations, and inner problems to FGW_TOL, also with POT's warm start if
    ``warm_tol``) and on torch inputs, forward and ``backward``."""
    pairs_np = numpy_pairs(pairs_t)
    name = f"{prefix}POT entropic FGW"
    row(key, f"{name} (numpy), {kind}loop over pairs, {FGW_OUTER}x{FGW_INNER}",
        lambda: pot_fgw(pairs_np), None, as_torch(pot_fgw(pairs_np)), ref)
    for warm in (False, True) if warm_tol else (False,):
        run = lambda w=warm: pot_fgw(pairs_np, FGW_INNER_MAX, FGW_TOL, warmstart=w)  # noqa: E731
        row(f"{key}_tol{'_warm' if warm else ''}",
            f"{name} (numpy), {kind}loop, {FGW_OUTER} outer, inner to tol {FGW_TOL:g}"
            + (" (warmstart=True)" if warm else ""), run, plans=as_torch(run()), ref=ref)
    row(f"{key}_torch", f"{name} (torch), {kind}loop over pairs, {FGW_OUTER}x{FGW_INNER}",
        lambda: pot_fgw(pairs_t), backward, as_torch(pot_fgw(pairs_t)), ref)


def as_torch(plans):
    return [torch.from_numpy(p) if not torch.is_tensor(p) else p.cpu() for p in plans]


# ----------------------------------------------------------------------------- runs
def run_batch(name, batch, same, device, repeats, with_pot=True, only_new=False) -> Dict[str, dict]:
    """Every row of one batch's table: Sinkhorn and FGW (ours against POT), FGW with
    GM-OT's window, the cost functions; ``only_new`` the last two only."""
    rows: Dict[str, dict] = {}

    def row(key, label, fwd, fwdbwd=None, plans=None, ref=None, mem_fn=None):
        r = {"label": label, "fwd_ms": time_ms(fwd, device, repeats)}
        if fwdbwd is not None:
            r["fwdbwd_ms"] = time_ms(fwdbwd, device, repeats)
        if plans is not None:
            r["marg_err"] = marginal_error(plans, batch)
            r["plan_err"] = plan_error(plans, ref) if ref is not None else None
        if mem_fn is not None:
            r["peak_mb"] = peak_mb(mem_fn, device)
        rows[key] = r
        logging.info("%s %s: %s", name, label, {k: v for k, v in r.items() if k != "label"})

    if not only_new:
        run_sinkhorn(row, batch, same, with_pot)
        run_fgw(row, batch, same, with_pot)
    run_windowed(row, batch, device, with_pot)
    run_costs(row, batch, device)
    return rows


def run_sinkhorn(row, batch, same, with_pot):
    """Sinkhorn: ours (fixed iterations, early stop, autodiff) against POT's per-pair
    loop (numpy and torch inputs) and, on a same-length batch, ``ot.batch``."""
    import ot

    C, Cx, Cy = problem(batch)
    xm, ym = batch["xm"], batch["ym"]
    ref = unpad(sinkhorn(C.double(), xm, ym, epsilon=EPS, tol=1e-10, max_iter=20000).plan, batch)

    def ours(iters=SINKHORN_ITERS, early=False):
        return sinkhorn(C, xm, ym, epsilon=EPS, max_iter=iters, tol=1e-5 if early else 0.0)

    def ours_bwd(early=False, grad="envelope"):
        x, y = leaf_features(batch)
        Cg = _scaled(costs.sqeuclidean(x, y, xm, ym))
        r = sinkhorn(Cg, xm, ym, epsilon=EPS, max_iter=1000 if early else SINKHORN_ITERS,
                     tol=1e-5 if early else 0.0, grad=grad)
        r.value.sum().backward()

    row("sinkhorn_ours", f"ours, batched, {SINKHORN_ITERS} its", ours, ours_bwd,
        unpad(ours().plan, batch), ref, mem_fn=ours_bwd)
    early = ours(iters=1000, early=True)
    row("sinkhorn_ours_tol", f"ours, early stop tol 1e-5 (max {int(early.n_iter.max())} its)",
        lambda: ours(iters=1000, early=True), lambda: ours_bwd(early=True),
        unpad(early.plan, batch), ref)
    autodiff = lambda: ours_bwd(grad="autodiff")  # noqa: E731
    row("sinkhorn_ours_autodiff", "ours, 50 its, grad=autodiff", ours, autodiff, mem_fn=autodiff)

    if with_pot:
        # POT gets the same float32 inputs: as numpy arrays (its fastest forward path)
        # and as the torch tensors themselves (what a training loop would hand it).
        pairs_t = [(n, m, c) for n, m, c, _, _ in pot_pairs(batch, C, Cx, Cy)]
        pairs_np = numpy_pairs(pairs_t)

        def pot_bwd():
            x, y = leaf_features(batch)
            Cg = _scaled(costs.sqeuclidean(x, y, xm, ym))
            total = 0
            for b, (n, m) in enumerate(zip(xm.sum(-1).tolist(), ym.sum(-1).tolist())):
                res = ot.solve(Cg[b, :n, :m], reg=EPS, method="sinkhorn_log",
                               max_iter=SINKHORN_ITERS, tol=0.0, grad="envelope")
                total = total + res.value
            total.backward()

        row("sinkhorn_pot", f"POT sinkhorn_log (numpy), loop over pairs, {SINKHORN_ITERS} its",
            lambda: pot_sinkhorn(pairs_np), None, as_torch(pot_sinkhorn(pairs_np)), ref)
        row("sinkhorn_pot_torch", f"POT sinkhorn_log (torch), loop over pairs, {SINKHORN_ITERS} its",
            lambda: pot_sinkhorn(pairs_t), pot_bwd, as_torch(pot_sinkhorn(pairs_t)), ref)

    # same-length copy: ours vs ot.batch
    s_C, _, _ = problem(same)
    s_ref = unpad(sinkhorn(s_C.double(), epsilon=EPS, tol=1e-10, max_iter=20000).plan, same)
    ours_same = lambda: sinkhorn(s_C, epsilon=EPS, max_iter=SINKHORN_ITERS, tol=0.0)  # noqa: E731
    row("sinkhorn_ours_same", "same-length batch: ours, 50 its", ours_same,
        plans=unpad(ours_same().plan, same), ref=s_ref)
    if with_pot:
        def potb():
            return ot.batch.solve_batch(s_C, reg=EPS, max_iter=SINKHORN_ITERS, tol=0.0, reg_type="kl")

        row("sinkhorn_potbatch_same", "same-length batch: POT ot.batch.solve_batch, 50 its",
            potb, plans=unpad(potb().plan, same), ref=s_ref)


def run_fgw(row, batch, same, with_pot):
    """Dense FGW: ours (fixed, warm-started, inner to a tolerance) against POT's per-pair
    loop (numpy and torch inputs, with and without its warm start) and, on a
    same-length batch, ``ot.batch``. The reference: float64, converged inner problems."""
    import ot

    C, Cx, Cy = problem(batch)
    xm, ym = batch["xm"], batch["ym"]
    kw = dict(alpha=ALPHA, epsilon=EPS, max_iter=FGW_OUTER, tol=0.0)
    ref = unpad(fused_gromov_wasserstein(C.double(), Cx.double(), Cy.double(), xm, ym,
                                         inner_max_iter=20000, inner_tol=1e-10, **kw).plan, batch)

    def ours(inner=FGW_INNER, x=None, y=None):
        # The timed call builds its costs (from leaf features in fwd+bwd rows).
        Cg, Cxg, Cyg = problem(batch, x, y)
        return fused_gromov_wasserstein(Cg, Cxg, Cyg, xm, ym, inner_max_iter=inner, **kw)

    def ours_bwd(inner=FGW_INNER):
        x, y = leaf_features(batch)
        ours(inner, x, y).value.sum().backward()

    row("fgw_ours", f"ours, batched, {FGW_OUTER}x{FGW_INNER}", ours, ours_bwd,
        unpad(ours().plan, batch), ref, mem_fn=ours_bwd)
    row("fgw_ours_warm", f"ours, batched, {FGW_OUTER}x{FGW_INNER_WARM} warm-started",
        lambda: ours(FGW_INNER_WARM), lambda: ours_bwd(FGW_INNER_WARM),
        unpad(ours(FGW_INNER_WARM).plan, batch), ref)
    def tol_run():  # the precomputed problem, inner problems to FGW_TOL
        return fused_gromov_wasserstein(C, Cx, Cy, xm, ym, inner_max_iter=FGW_INNER_MAX,
                                        inner_tol=FGW_TOL, **kw)

    row("fgw_ours_tol", f"ours, {FGW_OUTER} outer, inner to tol {FGW_TOL:g} (warm-started)",
        tol_run, plans=unpad(tol_run().plan, batch), ref=ref)
    if not with_pot:
        return

    def pot_bwd():
        x, y = leaf_features(batch)
        pot_fgw_backward(pot_pairs(batch, *problem(batch, x, y)))

    pot_fgw_rows(row, "fgw_pot", "", pot_pairs(batch, C, Cx, Cy), pot_bwd, ref, warm_tol=True)

    s_C, s_Cx, s_Cy = problem(same)
    s_ref = unpad(fused_gromov_wasserstein(s_C.double(), s_Cx.double(), s_Cy.double(),
                                           inner_max_iter=20000, inner_tol=1e-10, **kw).plan, same)
    ours_same = lambda: fused_gromov_wasserstein(s_C, s_Cx, s_Cy, inner_max_iter=FGW_INNER, **kw)  # noqa: E731

    def potb():
        return ot.batch.solve_gromov_batch(
            s_Cx, s_Cy, reg=EPS, M=s_C, alpha=ALPHA, max_iter=FGW_OUTER, tol=0.0,
            max_iter_inner=FGW_INNER, tol_inner=0.0, symmetric=True)

    row("fgw_ours_same", f"same-length batch: ours, {FGW_OUTER}x{FGW_INNER}", ours_same,
        plans=unpad(ours_same().plan, same), ref=s_ref)
    row("fgw_potbatch_same",
        f"same-length batch: POT ot.batch.solve_gromov_batch, {FGW_OUTER}x{FGW_INNER} (PPA)",
        potb, plans=unpad(potb().plan, same), ref=s_ref)


def run_windowed(row, batch, device, with_pot):
    """FGW with GM-OT's window ws = WS: ours banded (both window modes) vs POT's dense
    per-pair loop on the dense windowed structures ("zero" semantics; POT has no
    "masked" reading, so that row solves another problem and is timed for scale)."""
    xm, ym = batch["xm"], batch["ym"]
    C, Bx, By = problem_windowed(batch)
    _, Dx, Dy = problem_windowed(batch, banded=False)
    kw = dict(alpha=ALPHA, epsilon=EPS, max_iter=FGW_OUTER, tol=0.0)
    refs = {
        mode: unpad(fused_gromov_wasserstein(
            C.double(), Bx.double(), By.double(), xm, ym, inner_max_iter=20000,
            inner_tol=1e-10, ws=WS, window_mode=mode, **kw).plan, batch)
        for mode in ("zero", "masked")
    }

    def ours(mode="zero", inner=FGW_INNER, x=None, y=None, inner_tol=None):
        # Forward rows solve the precomputed problem, as POT's rows do; fwd+bwd rows
        # build it from the features (x, y given).
        Cg, Bxg, Byg = (C, Bx, By) if x is None else problem_windowed(batch, x, y)
        return fused_gromov_wasserstein(Cg, Bxg, Byg, xm, ym, inner_max_iter=inner,
                                        inner_tol=inner_tol, ws=WS, window_mode=mode, **kw)

    def ours_bwd(mode="zero"):
        x, y = leaf_features(batch)
        ours(mode, x=x, y=y).value.sum().backward()

    for mode in ("zero", "masked"):
        tag = "" if mode == "zero" else "_masked"
        row(f"fgw_ws{tag}_ours", f"ws={WS} {mode}: ours, banded, {FGW_OUTER}x{FGW_INNER}",
            lambda m=mode: ours(m), lambda m=mode: ours_bwd(m), unpad(ours(mode).plan, batch),
            refs[mode])
    tol_run = lambda: ours(inner=FGW_INNER_MAX, inner_tol=FGW_TOL)  # noqa: E731
    row("fgw_ws_ours_tol", f"ws={WS} zero: ours, banded, {FGW_OUTER} outer, inner to tol {FGW_TOL:g}",
        tol_run, plans=unpad(tol_run().plan, batch), ref=refs["zero"])

    def ours_dense():
        return fused_gromov_wasserstein(C, Dx, Dy, xm, ym, inner_max_iter=FGW_INNER, **kw)

    row("fgw_ws_ours_dense", f"ws={WS} zero: ours, dense windowed matrices, {FGW_OUTER}x{FGW_INNER}",
        ours_dense, plans=unpad(ours_dense().plan, batch), ref=refs["zero"])
    if not with_pot:
        return

    def pot_bwd():
        x, y = leaf_features(batch)
        pot_fgw_backward(pot_pairs(batch, *problem_windowed(batch, x, y, banded=False)))

    pot_fgw_rows(row, "fgw_ws_pot", f"ws={WS}: ", pot_pairs(batch, C, Dx, Dy), pot_bwd,
                 refs["zero"], kind="dense, ")


def run_costs(row, batch, device):
    """The cost matrices' forward+backward against their floor: the three batched
    products it cannot avoid, ``x y^T`` forward and ``G y``, ``G^T x`` backward (each
    timed alone), and plain autograd through the same expression for comparison."""
    x, y, xm, ym = batch["x"], batch["y"], batch["xm"], batch["ym"]
    G = torch.rand(x.shape[0], x.shape[1], y.shape[1], device=x.device)

    def plain_sq(x, y):
        c = (x.pow(2).sum(-1, keepdim=True) + y.pow(2).sum(-1).unsqueeze(-2)
             - 2.0 * torch.bmm(x, y.transpose(1, 2))).clamp_min(0.0)
        return c.masked_fill(~(xm[:, :, None] & ym[:, None, :]), 0.0)

    def fwdbwd(fn):
        xl, yl = leaf_features(batch)
        fn(xl, yl).sum().backward()

    row("cost_floor", "3 batched products: x y^T, G y, G^T x (the floor)",
        lambda: (torch.bmm(x, y.transpose(1, 2)), torch.bmm(G, y), torch.bmm(G.transpose(1, 2), x)))
    row("cost_gemm", "1 batched product x y^T", lambda: torch.bmm(x, y.transpose(1, 2)))
    row("cost_sqeuclidean", "costs.sqeuclidean (autograd Function)",
        lambda: costs.sqeuclidean(x, y, xm, ym),
        lambda: fwdbwd(lambda a, b: costs.sqeuclidean(a, b, xm, ym)))
    row("cost_cosine", "costs.cosine (autograd Function)", lambda: costs.cosine(x, y, xm, ym),
        lambda: fwdbwd(lambda a, b: costs.cosine(a, b, xm, ym)))
    row("cost_sqeuclidean_plain", "sqeuclidean as plain autograd ops (before)",
        lambda: plain_sq(x, y), lambda: fwdbwd(plain_sq))


def ratios(rows: Dict[str, dict], prefix: str) -> Dict[str, float]:
    out = {}

    def r(key, a, b, field):
        if a in rows and b in rows and field in rows[a] and field in rows[b]:
            out[f"{prefix}_{key}"] = round(rows[b][field] / rows[a][field], 2)

    r("sinkhorn_fwd_vs_pot_loop", "sinkhorn_ours", "sinkhorn_pot", "fwd_ms")
    r("sinkhorn_fwd_vs_pot_torch_loop", "sinkhorn_ours", "sinkhorn_pot_torch", "fwd_ms")
    r("sinkhorn_fwdbwd_vs_pot_torch_loop", "sinkhorn_ours", "sinkhorn_pot_torch", "fwdbwd_ms")
    r("sinkhorn_fwd_vs_pot_batch", "sinkhorn_ours_same", "sinkhorn_potbatch_same", "fwd_ms")
    r("fgw_fwd_vs_pot_loop", "fgw_ours", "fgw_pot", "fwd_ms")
    r("fgw_fwd_vs_pot_torch_loop", "fgw_ours", "fgw_pot_torch", "fwd_ms")
    r("fgw_fwdbwd_vs_pot_torch_loop", "fgw_ours", "fgw_pot_torch", "fwdbwd_ms")
    r("fgw_warm_fwd_vs_pot_loop", "fgw_ours_warm", "fgw_pot", "fwd_ms")
    r("fgw_fwd_vs_pot_batch", "fgw_ours_same", "fgw_potbatch_same", "fwd_ms")
    r("fgw_tol_fwd_vs_pot_loop", "fgw_ours_tol", "fgw_pot_tol", "fwd_ms")
    r("fgw_tol_fwd_vs_pot_loop_warm", "fgw_ours_tol", "fgw_pot_tol_warm", "fwd_ms")
    r("fgw_ws_fwd_vs_pot_loop", "fgw_ws_ours", "fgw_ws_pot", "fwd_ms")
    r("fgw_ws_masked_fwd_vs_pot_loop", "fgw_ws_masked_ours", "fgw_ws_pot", "fwd_ms")
    r("fgw_ws_fwd_vs_pot_torch_loop", "fgw_ws_ours", "fgw_ws_pot_torch", "fwd_ms")
    r("fgw_ws_fwdbwd_vs_pot_torch_loop", "fgw_ws_ours", "fgw_ws_pot_torch", "fwdbwd_ms")
    r("fgw_ws_masked_fwdbwd_vs_pot_torch_loop", "fgw_ws_masked_ours", "fgw_ws_pot_torch", "fwdbwd_ms")
    r("fgw_ws_tol_fwd_vs_pot_loop", "fgw_ws_ours_tol", "fgw_ws_pot_tol", "fwd_ms")
    r("fgw_ws_banded_vs_dense_ours", "fgw_ws_ours", "fgw_ws_ours_dense", "fwd_ms")
    # Costs: forward+backward over the floor (lower is better; target <= 1.5).
    for k in ("cost_sqeuclidean", "cost_cosine", "cost_sqeuclidean_plain"):
        if k in rows and "cost_floor" in rows:
            out[f"{prefix}_{k}_fwdbwd_over_floor"] = round(rows[k]["fwdbwd_ms"] / rows["cost_floor"]["fwd_ms"], 2)
        if k in rows and "cost_gemm" in rows:
            out[f"{prefix}_{k}_fwdbwd_over_one_product"] = round(rows[k]["fwdbwd_ms"] / rows["cost_gemm"]["fwd_ms"], 2)
    for k in ("sinkhorn_ours", "fgw_ours", "fgw_ours_warm", "fgw_ours_tol", "fgw_ws_ours",
              "fgw_ws_masked_ours"):
        if k in rows:
            out[f"{prefix}_{k}_fwd_ms"] = round(rows[k]["fwd_ms"], 2)
    return out


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(title: str, rows: Dict[str, dict]) -> None:
    print(f"\n## {title}\n")
    print("| method | fwd ms | fwd+bwd ms | peak MB | max marginal err | max plan err vs ref |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows.values():
        print(
            f"| {r['label']} | {_fmt(r.get('fwd_ms'), '.2f')} | {_fmt(r.get('fwdbwd_ms'), '.2f')} "
            f"| {_fmt(r.get('peak_mb'), '.1f')} | {_fmt(r.get('marg_err'), '.1e')} "
            f"| {_fmt(r.get('plan_err'), '.1e')} |"
        )


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (smoke test)")
    p.add_argument("--skip-large", action="store_true", help="only the reference batch")
    p.add_argument("--no-pot-large", action="store_true",
                   help="skip POT on the large batch (its per-pair loop takes a while)")
    p.add_argument("--json-out", default=None, help="also write the JSON line to this file")
    p.add_argument("--only-new", action="store_true",
                   help="only the windowed FGW and cost rows, not the others")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench_ot: %(message)s")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    if args.quick:
        configs = [("quick", 3, (6, 10), (3, 5), 8, True)]
        args.repeats = 1
    else:
        configs = [("reference", 16, (120, 200), (15, 30), 256, True)]
        if not args.skip_large:
            configs.append(("large", 32, (375, 500), (75, 100), 1024, not args.no_pot_large))
    name = torch.cuda.get_device_name() if torch.device(dev).type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"# OT benchmark on {name}, torch {torch.__version__}, eps {EPS}, alpha {ALPHA}")
    summary = {"device": name}
    for label, B, nr, mr, D, with_pot in configs:
        batch = make_batch(B, nr, mr, D, dev)
        same = make_batch(B, nr, mr, D, dev, seed=1, same_length=True)
        rows = run_batch(label, batch, same, dev, args.repeats, with_pot, args.only_new)
        print_table(f"{label}: B={B}, N {nr[0]}-{nr[1]}, M {mr[0]}-{mr[1]}, D={D}", rows)
        summary.update(ratios(rows, label))
    line = json.dumps(summary, sort_keys=True)
    print()
    print(line)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")
    return summary


if __name__ == "__main__":
    main()
