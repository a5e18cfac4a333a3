"""Entropic optimal transport on a padded batch: log-domain Sinkhorn.

For each pair ``b`` of the batch, with cost ``C`` (``N_b x M_b`` real entries) and
marginals ``a``, ``b`` (uniform over the real positions unless given), solve::

    min_P  <C, P> + epsilon * KL(P | a b^T)
           [+ tau_a * KL(P 1 | a) + tau_b * KL(P^T 1 | b)]  (unbalanced, tau given)
    s.t.   P >= 0,  P 1 = a,  P^T 1 = b                     (balanced, tau None)

``tau`` is one number for both marginals or a pair ``(tau_a, tau_b)`` in which None
keeps that marginal a hard constraint (one-sided unbalanced OT, e.g. every token
matched while frames may shed mass).

KL is the generalised divergence ``sum p log(p/q) - p + q``. This is the problem POT
solves with ``ot.sinkhorn(a, b, C, epsilon, method="sinkhorn_log")`` (balanced) and
``ot.unbalanced.sinkhorn_unbalanced(a, b, C, epsilon, reg_m=tau)`` (unbalanced; a pair
with None is POT's ``reg_m=(tau_a, inf)``); ``tau`` is POT's ``reg_m``, and ott-jax's
``tau_a`` is our ``tau_a / (tau_a + epsilon)``.

The potentials live in the log domain (stable for tiny ``epsilon`` and large costs);
between log-domain steps, cheap scaling iterations do most of the work. The whole
batch is solved at once; padding is masked, never looped over.

Layers (as in POT and ott-jax): :mod:`.problem` (costs, marginals, masks), :mod:`.kernel`
(the Gibbs kernel and every numerical device), and here the solvers: :func:`solve`
is the entry point that :func:`sinkhorn` and FGW's inner problems share, with the
log-domain loop :func:`_log_sinkhorn` (POT's ``sinkhorn_log``, ott-jax's ``lse_step``)
and the stabilised loop :func:`_stabilized_sinkhorn` (POT's ``sinkhorn_stabilized``,
ott-jax's ``kernel_step`` with absorption).

Gradients (``grad``):
    ``"envelope"`` (default): the plan is treated as a constant. ``value`` then has
        gradient exactly ``plan`` w.r.t. the cost (envelope theorem at the optimum), and
        the iterations keep no autograd graph, so memory does not grow with
        ``max_iter``.
    ``"autodiff"``: back-propagate through every iteration (memory per iteration).
    ``"detach"``: no gradient at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from espnet_otreg.ot import problem as _problem
from espnet_otreg.ot.kernel import SAFE_MAX, SAFE_MIN, Kernel, solve_mode

__all__ = ["sinkhorn", "OTResult", "solve"]


@dataclass
class OTResult:
    """What a solver returns. Per-pair tensors have a leading batch dim ``B``.

    Attributes:
        plan: ``(B, N, M)`` transport plan, exactly 0 on padding.
        value: ``(B,)`` the objective the solver minimises at ``plan`` (transport cost
            plus ``epsilon * KL(plan | a b^T)``, plus the ``tau`` marginal terms when
            unbalanced). Differentiable as chosen by ``grad``; with ``"envelope"`` its
            gradient w.r.t. the cost is exactly ``plan`` (envelope theorem).
        value_linear: ``(B,)`` ``<C, plan>``, the transport cost alone (POT's
            ``sinkhorn2`` value). Differentiable like ``value``.
        n_iter: ``(B,)`` Sinkhorn iterations until the pair converged (``max_iter`` if
            it did not). For FGW: outer iterations.
        converged: ``(B,)`` bool, ``error <= tol``.
        error: ``(B,)`` last measured error: L1 marginal error for balanced problems,
            largest change of the scaled potentials for unbalanced ones; for FGW the L1
            change of the plan between outer iterations.
        f, g: ``(B, N)``, ``(B, M)`` dual potentials in cost units (``-inf`` on
            padding); pass them back as ``init`` to warm-start a related problem.
    """

    plan: torch.Tensor
    value: torch.Tensor
    value_linear: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    error: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor


@dataclass
class SolveResult:
    """What :func:`solve` returns: log-scalings ``(u, v)``, their plan and progress."""

    u: torch.Tensor
    v: torch.Tensor
    plan: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    error: torch.Tensor


class Progress:
    """Per-pair convergence bookkeeping, on device (no host sync)."""

    def __init__(self, B, dtype, device, tol):
        self.tol = tol
        self.converged = torch.zeros(B, dtype=torch.bool, device=device)
        self.n_iter = torch.zeros(B, dtype=torch.long, device=device)
        self.error = torch.full((B,), math.inf, dtype=dtype, device=device)

    def record(self, it: int, error: torch.Tensor) -> None:
        # n_iter follows the checks until the pair converges; the last check is at
        # max_iter, so a pair that never converges ends with n_iter = max_iter.
        self.n_iter = torch.where(self.converged, self.n_iter, it)
        self.converged = self.converged | (error <= self.tol)
        self.error = error

    def undone(self, ok: torch.Tensor, error: torch.Tensor) -> None:
        """Pairs whose last segment was undone (``ok`` False) report ``error``, what they
        measured before it, instead of the last check's."""
        self.error = torch.where(ok, self.error, error)

    def result(self, u, v, plan) -> SolveResult:
        return SolveResult(u, v, plan, self.n_iter, self.converged, self.error)


def solve(kernel: Kernel, u, v, max_iter: int, tol: float, check_every: int,
          early_stop: bool, method: str = "stabilized", start_log: bool = True,
          check_early: bool = False) -> SolveResult:
    """Sinkhorn iterations on ``kernel`` from log-scalings ``(u, v)``.

    ``method="log"``: :func:`_log_sinkhorn`; ``"stabilized"``: :func:`_stabilized_sinkhorn`
    (same iterates). The error is measured every ``check_every`` iterations, on device;
    with ``early_stop`` the loop leaves once every pair has converged (one host sync per
    check), else it runs exactly ``max_iter`` iterations with no host sync.
    ``start_log=False`` skips the stabilised loop's opening log-domain step (a warm
    start from potentials that are already close, as in FGW's outer loop);
    ``check_early`` (with ``early_stop``) adds checks at about doubling iteration
    counts below ``check_every`` (2, 4, 8; 3, 6 after an opening log step), for warm
    starts, which often converge within two or three iterations.
    """
    progress = Progress(kernel.K.shape[0], kernel.K.dtype, kernel.K.device, tol)
    if method == "log":
        return _log_sinkhorn(kernel, u, v, progress, max_iter, check_every, early_stop)
    return _stabilized_sinkhorn(kernel, u, v, progress, max_iter, check_every, early_stop,
                                start_log, check_early and early_stop)


def _log_sinkhorn(k: Kernel, u, v, progress: Progress, max_iter, check_every, early_stop):
    """Log-domain Sinkhorn (balanced: ``phi = 1``)::

        u <- phi (log a - LSE_j(K_ij + v_j))
        v <- phi (log b - LSE_i(K_ij + u_i))
    """
    it = 0
    while True:
        u_new, lse = k.update_u(v)
        if it > 0 and (it % check_every == 0 or it >= max_iter):
            progress.record(it, k.error(u, u_new, lse))
            if it >= max_iter or (early_stop and bool(progress.converged.all())):
                break
        u = u_new
        v = k.update_v(u)
        it += 1
    return progress.result(u, v, k.plan(u, v))


def _log_step(k: Kernel, u, v):
    """One log-domain iteration; returns ``(u, v)`` and the error of the state before."""
    u_new, lse = k.update_u(v)
    return u_new, k.update_v(u_new), k.error(u, u_new, lse)


def _repaired(k: Kernel, u, v, ok):
    """``(u, v, plan)`` after a fold: pairs whose last scaling segment was undone
    (``ok`` False) hold potentials from before it, possibly for another kernel (a warm
    start), and get one log-domain step on this kernel."""
    u2, v2, _ = _log_step(k, u, v)
    u, v = torch.where(ok[:, None], u, u2), torch.where(ok[:, None], v, v2)
    return u, v, k.plan(u, v)


def _stabilized_sinkhorn(k: Kernel, u, v, progress: Progress, max_iter, check_every,
                         early_stop, start_log, check_early):
    """Stabilised Sinkhorn (Schmitzer, arXiv 1610.06519; POT's ``sinkhorn_stabilized``).

    The log-scalings are absorbed into ``E = exp(K + u + v)`` and the loop iterates on
    scalings, two vector-matrix products per iteration::

        s_u <- (a / E s_v)^phi w_u,    s_v <- (b / E^T s_u)^phi w_v

    with the same iterates as :func:`_log_sinkhorn`. The scalings are folded back
    (``u += log s_u``, a new ``E``) at the end, or when one strays more than ``e^30``
    from 1; an exact log-domain step follows then, and a pair whose scalings left the
    float range (cost / epsilon in the thousands) has its segment undone, so it never
    sees NaN. One log-domain step opens the loop unless ``start_log`` is False.
    """
    it, log_error, need_log = 0, progress.error, start_log
    while True:  # one segment: [an exact log-domain step], then scalings on one E
        if need_log:
            u, v, log_error = _log_step(k, u, v)
            it += 1
            if it >= max_iter:
                progress.record(it, log_error)
                return progress.result(u, v, k.plan(u, v))
        need_log = True
        E = k.absorb(u, v)
        s_u, s_v = E.unit_scalings()
        rows = E.rows(s_v)
        while True:  # iterate on the scalings, check, until they are folded back
            steps = _steps_to_next_check(it, check_every, max_iter, check_early)
            s_u, s_v, rows, error = _scaling_steps(E, s_u, s_v, rows, steps)
            it += steps
            done, converged = it >= max_iter, False
            if early_stop:
                progress.record(it, error)
                safe, converged = _safe_and_converged(E, s_u, s_v, error, progress.tol)
                if safe and not (converged or done):
                    continue
                if safe:
                    u, v, _ = E.fold(s_u, s_v, check=False)
                    return progress.result(u, v, E.plan(s_u, s_v))
            # Fold back: at every check without early stop (no host sync), else when a
            # scaling strayed (entries of E that underflowed may matter once the
            # scalings move that far). A pair whose scalings left the float range has
            # its segment undone and measured nothing: it keeps its log step's error.
            u, v, ok = E.fold(s_u, s_v, check=True)
            if early_stop:  # recorded above
                progress.undone(ok, log_error)
            else:
                progress.record(it, torch.where(ok, error, log_error))
            if done or (early_stop and converged):
                return progress.result(*_repaired(k, u, v, ok))
            break


def _steps_to_next_check(it: int, check_every: int, max_iter: int, check_early: bool) -> int:
    """Iterations until the next error check: at multiples of ``check_every`` and at
    ``max_iter``; with ``check_early``, the count about doubles below ``check_every``."""
    steps = min(check_every - (it % check_every), max_iter - it)
    if check_early and it < check_every:
        steps = min(steps, max(it, 2))
    return steps


def _scaling_steps(E, s_u, s_v, rows, steps: int):
    """``steps`` scaling iterations on ``E``; returns the scalings, ``E s_v`` and the
    error of the last one."""
    for _ in range(steps):
        s_prev = s_u
        s_u = E.update_u(rows)
        s_v = E.update_v(E.cols(s_u))
        rows = E.rows(s_v)
    return s_u, s_v, rows, E.error(s_u, s_prev, rows)


def _safe_and_converged(E, s_u, s_v, error, tol: float) -> Tuple[bool, bool]:
    """One host sync for both decisions: is every scaling within ``[SAFE_MIN, SAFE_MAX]``,
    has every pair converged (both False for NaN)?"""
    lo, hi, worst = torch.stack([*E.extremes(s_u, s_v), error.amax()]).tolist()
    return SAFE_MIN < lo and hi < SAFE_MAX, worst <= tol


def regulariser(k: Kernel, u, v, plan, epsilon: float,
                tau: Tuple[Optional[float], Optional[float]]) -> torch.Tensor:
    """``epsilon KL(P | a b^T)`` (+ ``tau_a KL(P 1 | a) + tau_b KL(P^T 1 | b)`` for the
    relaxed sides), per pair; ``tau`` is the pair of :func:`problem.tau_pair`.

    KL is the generalised one, ``sum p log(p/q) - p + q``, as in POT. Computed from the
    log-plan so that autodiff never sees ``log 0``: ``log(P_ij / a_i b_j) = K_ij + u_i
    - log a_i + v_j - log b_j``, with the -inf of padding replaced by 0 (P is 0 there).
    """
    p = k.problem
    ru = torch.nan_to_num(u - p.log_a, nan=0.0, posinf=0.0, neginf=0.0)
    rv = torch.nan_to_num(v - p.log_b, nan=0.0, posinf=0.0, neginf=0.0)
    log_ratio = k.K + ru[:, :, None] + rv[:, None, :]
    mass = plan.sum((1, 2))
    kl = (plan * log_ratio).sum((1, 2)) - mass + p.a.sum(-1) * p.b.sum(-1)
    out = epsilon * kl
    tau_a, tau_b = tau
    if tau_a is not None:
        out = out + tau_a * _kl_vec(plan.sum(-1), p.a)
    if tau_b is not None:
        out = out + tau_b * _kl_vec(plan.sum(-2), p.b)
    return out


def _kl_vec(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    live = w > 0
    one = torch.ones_like(m)
    m_safe = torch.where(live, m, one)
    w_safe = torch.where(live, w, one)
    t = m_safe * torch.log(m_safe.clamp_min(torch.finfo(m.dtype).tiny) / w_safe) - m_safe + w_safe
    return torch.where(live, t, torch.zeros_like(t)).sum(-1)


def check_solver_args(epsilon, tau, grad, method):
    """Shared argument checks. Returns ``(tau_a, tau_b)`` (:func:`problem.tau_pair`)
    and the kernel's ``(phi_a, phi_b)``, ``phi = tau / (tau + epsilon)`` (None on a
    hard side)."""
    _problem.check_positive("epsilon", epsilon)
    taus = _problem.tau_pair(tau)
    _problem.check_grad_mode(grad)
    _problem.check_method(method)
    return taus, tuple(None if t is None else t / (t + epsilon) for t in taus)


def sinkhorn(
    cost: torch.Tensor,
    x_mask: Optional[torch.Tensor] = None,
    y_mask: Optional[torch.Tensor] = None,
    epsilon: float = 0.1,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    tau: _problem.Tau = None,
    max_iter: int = 1000,
    tol: float = 1e-5,
    check_every: int = 10,
    early_stop: bool = True,
    grad: str = "envelope",
    init: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    method: str = "stabilized",
) -> OTResult:
    """Solve a padded batch of entropic (optionally unbalanced) OT problems.

    Args:
        cost: ``(B, N, M)`` cost matrices; entries on padding are ignored.
        x_mask: ``(B, N)`` bool, True on real rows (default: all real).
        y_mask: ``(B, M)`` bool, True on real columns.
        epsilon: entropic regularisation, in cost units. Scale costs to O(1) (e.g.
            cosine costs) for a scale-free choice.
        a, b: ``(B, N)``, ``(B, M)`` non-negative marginals; default uniform ``1/N_b``
            over the real positions. For balanced OT they must have equal mass.
        tau: KL marginal relaxation (unbalanced OT); None = balanced; a pair
            ``(tau_a, tau_b)`` relaxes each marginal on its own, None (or inf) keeping
            it hard (one-sided).
        max_iter: Sinkhorn iterations at most (one iteration = a row and a column
            update).
        tol: convergence threshold on ``error`` (see :class:`OTResult`).
        check_every: measure the error every this many iterations (on device).
        early_stop: leave once every pair converged; costs one host sync per check.
            With False, exactly ``max_iter`` iterations and no host sync.
        grad: ``"envelope"``, ``"autodiff"`` or ``"detach"`` (module docstring).
        init: ``(f, g)`` potentials in cost units from an earlier result, to warm-start
            (with ``early_stop`` the error is then also checked after about 2, 4 and 8
            iterations).
        method: ``"stabilized"`` (default): cheap scaling iterations on the
            absorbed kernel, folded back into log-domain potentials at the end or when
            the scalings grow large, with log-domain steps for any pair whose
            scalings leave the float range; ``"log"``: log-domain steps only (several
            times more work per iteration, same iterates).

    Returns:
        :class:`OTResult` with plan, value, value_linear, n_iter, converged, error,
        f and g.
    """
    taus, phi = check_solver_args(epsilon, tau, grad, method)
    if max_iter < 1 or check_every < 1:
        raise ValueError(f"max_iter and check_every must be >= 1, got {max_iter}, {check_every}")
    problem = _problem.prepare(cost, x_mask, y_mask, a, b)
    u, v = _problem.init_potentials(problem, init, epsilon)

    track = grad == "autodiff"
    with solve_mode(track):
        k = Kernel.from_cost(problem, epsilon, phi,
                             problem.cost if track else problem.cost.detach())
        out = solve(k, u, v, max_iter, tol, check_every, early_stop, method,
                    check_early=init is not None and tol > 0)
        reg = regulariser(k, out.u, out.v, out.plan, epsilon, taus)
        u, v, plan, n_iter, converged, error = (
            out.u, out.v, out.plan, out.n_iter, out.converged, out.error
        )
    if not track:  # out of inference mode (see kernel.solve_mode)
        u, v, plan, reg, n_iter, converged, error = (
            t.clone() for t in (u, v, plan, reg, n_iter, converged, error)
        )

    cost_in = problem.cost.detach() if grad == "detach" else problem.cost
    value_linear = (plan * cost_in).sum((1, 2))
    f, g = _problem.potentials_out(problem, u.detach(), v.detach(), epsilon)
    return OTResult(plan=plan, value=value_linear + reg, value_linear=value_linear,
                    n_iter=n_iter, converged=converged, error=error, f=f, g=g)
