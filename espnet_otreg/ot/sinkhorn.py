"""Entropic optimal transport on a padded batch: log-domain Sinkhorn.

For each pair ``b`` of the batch, with cost ``C`` (``N_b x M_b`` real entries) and
marginals ``a``, ``b`` (uniform over the real positions unless given), solve::

    min_P  <C, P> + epsilon * KL(P | a b^T)
           [+ tau * KL(P 1 | a) + tau * KL(P^T 1 | b)]     (unbalanced, tau given)
    s.t.   P >= 0,  P 1 = a,  P^T 1 = b                     (balanced, tau None)

KL is the generalised divergence ``sum p log(p/q) - p + q``. This is the problem POT
solves with ``ot.sinkhorn(a, b, C, epsilon, method="sinkhorn_log")`` (balanced) and
``ot.unbalanced.sinkhorn_unbalanced(a, b, C, epsilon, reg_m=tau)`` (unbalanced);
``tau`` is POT's ``reg_m``, and ott-jax's ``tau_a = tau / (tau + epsilon)``.

The potentials live in the log domain (stable for tiny ``epsilon`` and large costs);
between log-domain steps, cheap scaling iterations do most of the work (see
:func:`espnet_otreg.ot._core.sinkhorn_loop`). The whole batch is solved at once;
padding is masked, never looped over.

Gradients (``grad``):
    ``"envelope"`` (default): the plan is treated as a constant. ``value`` then has
        gradient exactly ``plan`` w.r.t. the cost (envelope theorem at the optimum), and
        the iterations keep no autograd graph, so memory does not grow with
        ``max_iter``.
    ``"autodiff"``: back-propagate through every iteration (memory per iteration).
    ``"detach"``: no gradient at all.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from espnet_otreg.ot import _core
from espnet_otreg.ot._core import OTResult

__all__ = ["sinkhorn", "OTResult"]


def sinkhorn(
    cost: torch.Tensor,
    x_mask: Optional[torch.Tensor] = None,
    y_mask: Optional[torch.Tensor] = None,
    epsilon: float = 0.1,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    tau: Optional[float] = None,
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
        tau: KL marginal relaxation (unbalanced OT); None = balanced.
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
    _core.check_positive("epsilon", epsilon)
    _core.check_positive("tau", tau, allow_none=True)
    _core.check_grad_mode(grad)
    _core.check_method(method)
    if max_iter < 1 or check_every < 1:
        raise ValueError(f"max_iter and check_every must be >= 1, got {max_iter}, {check_every}")
    problem = _core.prepare(cost, x_mask, y_mask, a, b)
    phi = None if tau is None else tau / (tau + epsilon)
    u, v = _core.init_potentials(problem, init, epsilon)

    track = grad == "autodiff"
    with _core.solve_mode(track):
        K = _core.kernel(problem.cost if track else problem.cost.detach(), problem, epsilon)
        out = _core.sinkhorn_loop(
            K, problem, u, v, phi, max_iter, tol, check_every, early_stop, method,
            check_early=init is not None and tol > 0,
        )
        u, v, plan, n_iter, converged, error = (
            out.u, out.v, out.plan, out.n_iter, out.converged, out.error
        )
        reg = _core.entropic_terms(problem, K, u, v, plan, epsilon, tau)
    if not track:  # out of inference mode (see _core.solve_mode)
        u, v, plan, reg, n_iter, converged, error = (
            t.clone() for t in (u, v, plan, reg, n_iter, converged, error)
        )

    cost_in = problem.cost.detach() if grad == "detach" else problem.cost
    value_linear = (plan * cost_in).sum((1, 2))
    value = value_linear + reg
    f_out, g_out = _core.potentials_out(problem, u.detach(), v.detach(), epsilon)
    return OTResult(
        plan=plan,
        value=value,
        value_linear=value_linear,
        n_iter=n_iter,
        converged=converged,
        error=error,
        f=f_out,
        g=g_out,
    )
