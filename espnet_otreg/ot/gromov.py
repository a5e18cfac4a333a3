"""Entropic fused Gromov-Wasserstein (FGW) on a padded batch.

Each pair is two graphs: nodes ``x_i`` / ``y_j`` with a node cost ``C_ij`` between
the graphs, and edge costs ``Cx_ik`` / ``Cy_jl`` inside each graph (see
:func:`espnet_otreg.ot.costs.structure`). With the square loss, FGW solves::

    min_P  (1 - alpha) <C, P> + alpha * sum_{ijkl} (Cx_ik - Cy_jl)^2 P_ij P_kl
           + epsilon * KL(P | a b^T)
    s.t.   P 1 = a,  P^T 1 = b

``alpha = 0`` is plain entropic OT; ``alpha = 1`` is Gromov-Wasserstein alone.

Solver: projected (mirror-descent) gradient as in Peyre et al. 2016 and POT's
``ot.gromov.entropic_fused_gromov_wasserstein(solver="PGD")``. Starting from
``P = a b^T``, each outer iteration linearises the quadratic term,
``G = (1 - alpha) C + 2 alpha (L (x) P)`` with
``(L (x) P)_ij = (Cx^2 a)_i + (Cy^2 b)_j - 2 (Cx P Cy^T)_ij``, and sets
``P <- sinkhorn(G, epsilon)``. The problem is non-convex; from the same start this
follows POT's path to the same stationary point.

Our additions: the whole batch at once with masks; the inner Sinkhorn in the log
domain (POT's inner solver works with ``exp(-G/epsilon)`` and underflows at small
``epsilon``); the inner Sinkhorn is warm-started from the previous outer iteration's
potentials (``warm_start``), which lets a few inner iterations do the work of many.

Unbalanced (``tau``): the inner problems use KL-relaxed marginals and the
linearisation uses the plan's current marginals instead of ``a``, ``b``. This is the
linearised scheme that the GM-OT group's unbalanced variant (arXiv 2509.05609)
suggests; their exact formulation is not available to us, so treat it as our choice.

Gradients: as in :mod:`espnet_otreg.ot.sinkhorn`. With ``"envelope"`` the plan is a
constant and ``value`` is differentiable w.r.t. ``cost``, ``c_x`` and ``c_y``: at a
stationary point that is the exact gradient of the FGW value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from espnet_otreg.ot import _core
from espnet_otreg.ot._core import OTResult

__all__ = ["fused_gromov_wasserstein", "FGWResult"]


@dataclass
class FGWResult(OTResult):
    """:class:`OTResult` plus the FGW parts.

    Attributes:
        value_quadratic: ``(B,)`` ``sum (Cx_ik - Cy_jl)^2 P_ij P_kl``; POT's
            ``fgw_dist`` is ``(1 - alpha) * value_linear + alpha * value_quadratic``.
        inner_converged: ``(B,)`` bool, whether the last inner Sinkhorn converged.
    """

    value_quadratic: torch.Tensor = None
    inner_converged: torch.Tensor = None


def _check_structure(name, c, B, L):
    if not torch.is_tensor(c) or tuple(c.shape) != (B, L, L):
        shape = tuple(c.shape) if torch.is_tensor(c) else type(c).__name__
        raise ValueError(f"{name} must have shape {(B, L, L)} to match cost, got {shape}")


def _tensor_product(cx2, cy2, cx, cy, plan, m, n):
    """``(L (x) P)_ij = sum_kl (Cx_ik - Cy_jl)^2 P_kl`` for the square loss.

    ``m``, ``n`` are the plan's marginals, ``cx2``, ``cy2`` the squared structures.
    """
    const = torch.bmm(cx2, m.unsqueeze(-1)) + torch.bmm(cy2, n.unsqueeze(-1)).transpose(1, 2)
    return const - 2.0 * torch.bmm(torch.bmm(cx, plan), cy.transpose(1, 2))


def _quad_grad(cx, cy, plan, m, n, symmetric):
    """Gradient of the quadratic term w.r.t. the plan."""
    g = _tensor_product(cx * cx, cy * cy, cx, cy, plan, m, n)
    if symmetric:
        return 2.0 * g
    cxt, cyt = cx.transpose(1, 2), cy.transpose(1, 2)
    return g + _tensor_product(cxt * cxt, cyt * cyt, cxt, cyt, plan, m, n)


def fused_gromov_wasserstein(
    cost: Optional[torch.Tensor],
    c_x: torch.Tensor,
    c_y: torch.Tensor,
    x_mask: Optional[torch.Tensor] = None,
    y_mask: Optional[torch.Tensor] = None,
    alpha: float = 0.5,
    epsilon: float = 0.1,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    tau: Optional[float] = None,
    max_iter: int = 10,
    inner_max_iter: int = 50,
    tol: float = 1e-5,
    inner_tol: Optional[float] = None,
    check_every: int = 10,
    early_stop: bool = True,
    warm_start: bool = True,
    symmetric: bool = True,
    grad: str = "envelope",
    init_plan: Optional[torch.Tensor] = None,
    method: str = "stabilized",
) -> FGWResult:
    """Solve a padded batch of entropic fused Gromov-Wasserstein problems.

    Args:
        cost: ``(B, N, M)`` node cost between the graphs, or None with ``alpha = 1``.
        c_x: ``(B, N, N)`` edge costs of the first graph (e.g. acoustic frames).
        c_y: ``(B, M, M)`` edge costs of the second graph (e.g. text tokens).
        x_mask, y_mask: ``(B, N)`` / ``(B, M)`` bool, True on real nodes.
        alpha: weight of the structure term in ``[0, 1]`` (GM-OT's alpha).
        epsilon: entropic regularisation of every inner problem.
        a, b: marginals (default uniform over real nodes).
        tau: KL marginal relaxation for the inner problems (None = balanced).
        max_iter: outer (linearisation) iterations at most.
        inner_max_iter: Sinkhorn iterations per outer iteration at most.
        tol: outer convergence on the L1 change of the plan.
        inner_tol: inner Sinkhorn tolerance (default ``tol``).
        check_every: inner convergence check period.
        early_stop: leave loops early once every pair converged (host syncs at checks).
        warm_start: start each inner Sinkhorn from the previous potentials.
        symmetric: ``c_x`` and ``c_y`` are symmetric (as from ``structure``); set False
            for directed graphs to use the general gradient.
        grad: ``"envelope"`` (default), ``"autodiff"`` or ``"detach"``.
        init_plan: ``(B, N, M)`` starting plan (default ``a b^T``).
        method: inner Sinkhorn method, ``"stabilized"`` or ``"log"`` (see
            :func:`espnet_otreg.ot.sinkhorn`).

    Returns:
        :class:`FGWResult`; ``value`` is the full objective above (its gradient at the
        solution is the envelope gradient), ``n_iter`` counts outer iterations.
    """
    if cost is None:
        if alpha != 1.0:
            raise ValueError("cost may only be None for pure Gromov-Wasserstein (alpha = 1)")
        if not torch.is_tensor(c_x) or c_x.dim() != 3 or not torch.is_tensor(c_y) or c_y.dim() != 3:
            raise ValueError("c_x and c_y must be (B, N, N) and (B, M, M) tensors")
        cost = c_x.new_zeros(c_x.shape[0], c_x.shape[1], c_y.shape[1])
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    _core.check_positive("epsilon", epsilon)
    _core.check_positive("tau", tau, allow_none=True)
    _core.check_grad_mode(grad)
    _core.check_method(method)
    if max_iter < 1 or inner_max_iter < 1 or check_every < 1:
        raise ValueError("max_iter, inner_max_iter and check_every must be >= 1")
    inner_tol = tol if inner_tol is None else inner_tol

    problem = _core.prepare(cost, x_mask, y_mask, a, b)
    B, N, M = problem.cost.shape
    _check_structure("c_x", c_x, B, N)
    _check_structure("c_y", c_y, B, M)
    dt = problem.cost.dtype
    real_x = problem.a > 0
    real_y = problem.b > 0
    # Edge costs on padding are irrelevant (no mass) but must be finite.
    c_x = c_x.to(dt).masked_fill(~(real_x[:, :, None] & real_x[:, None, :]), 0.0)
    c_y = c_y.to(dt).masked_fill(~(real_y[:, :, None] & real_y[:, None, :]), 0.0)
    phi = None if tau is None else tau / (tau + epsilon)
    alpha = float(alpha)

    track = grad == "autodiff"
    with torch.set_grad_enabled(track and torch.is_grad_enabled()):
        C = problem.cost if track else problem.cost.detach()
        cx = c_x if track else c_x.detach()
        cy = c_y if track else c_y.detach()
        if init_plan is None:
            plan = problem.a[:, :, None] * problem.b[:, None, :]
        else:
            if tuple(init_plan.shape) != (B, N, M):
                raise ValueError(f"init_plan must have shape {(B, N, M)}, got {tuple(init_plan.shape)}")
            plan = init_plan.detach().to(dt).masked_fill(~problem.support, 0.0)
        u, v = _core.init_potentials(problem, None, epsilon)
        converged = torch.zeros(B, dtype=torch.bool, device=C.device)
        n_iter = torch.full((B,), max_iter, dtype=torch.long, device=C.device)
        error = torch.full((B,), float("inf"), dtype=dt, device=C.device)
        inner_conv = converged
        for it in range(1, max_iter + 1):
            if tau is None:
                m, n = problem.a, problem.b
            else:
                m, n = plan.sum(-1), plan.sum(-2)
            lin = (1.0 - alpha) * C + alpha * _quad_grad(cx, cy, plan, m, n, symmetric)
            K = _core.kernel(lin, problem, epsilon)
            if not warm_start:
                u, v = _core.init_potentials(problem, None, epsilon)
            u, v, _, inner_conv, _ = _core.sinkhorn_loop(
                K, problem.log_a, problem.log_b, u, v, phi,
                inner_max_iter, inner_tol, check_every, early_stop, method,
            )
            new_plan = _core.real_plan(problem, K, u, v)
            error = (new_plan - plan).abs().sum((1, 2))
            plan = new_plan
            newly = (error <= tol) & ~converged
            n_iter = torch.where(newly, torch.full_like(n_iter, it), n_iter)
            converged = converged | newly
            if early_stop and it < max_iter and bool(converged.all()):
                break
        reg = _core.entropic_terms(problem, K, u, v, plan, epsilon, tau)

    p = plan if track else plan.detach()
    if grad == "detach":
        C_v, cx_v, cy_v = problem.cost.detach(), c_x.detach(), c_y.detach()
    else:
        C_v, cx_v, cy_v = problem.cost, c_x, c_y
    m, n = p.sum(-1), p.sum(-2)
    value_linear = (p * C_v).sum((1, 2))
    value_quadratic = (_tensor_product(cx_v * cx_v, cy_v * cy_v, cx_v, cy_v, p, m, n) * p).sum((1, 2))
    # The last inner problem's entropic terms, with the linearised cost's K; they do
    # not depend on the inputs in envelope mode.
    value = (1.0 - alpha) * value_linear + alpha * value_quadratic + (reg if track else reg.detach())
    f_out, g_out = _core.potentials_out(problem, u.detach(), v.detach(), epsilon)
    return FGWResult(
        plan=p,
        value=value,
        value_linear=value_linear,
        n_iter=n_iter,
        converged=converged & inner_conv,
        error=error,
        f=f_out,
        g=g_out,
        value_quadratic=value_quadratic,
        inner_converged=inner_conv,
    )
