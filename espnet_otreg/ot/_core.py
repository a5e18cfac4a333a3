"""Internals shared by the solvers: input checks, marginals, the log-domain Sinkhorn loop.

Conventions (all solvers):

- A problem is a padded batch: ``cost`` ``(B, N, M)``, ``x_mask`` ``(B, N)``,
  ``y_mask`` ``(B, M)`` (bool, True = real position), marginals ``a`` ``(B, N)`` and
  ``b`` ``(B, M)`` (uniform over the real positions by default).
- The loop works on log-scalings ``u``, ``v`` with ``P_ij = exp(K_ij + u_i + v_j)`` and
  ``K = -C / epsilon + log a_i + log b_j``; results report cost-unit potentials ``f``,
  ``g`` with ``P_ij = exp((f_i + g_j - C_ij) / epsilon)``.
- Padding is handled without NaNs: ``K`` is 0 on padded entries, ``log a`` / ``log b``
  are ``-inf`` on padded positions, which drives their potentials to ``-inf`` and
  their plan entries to exactly 0. A pair with no real position at all (an empty
  utterance in the batch) is solved as a dummy all-real problem and its plan zeroed.
- Work is done in float32 (float64 stays float64); bf16/fp16 inputs are upcast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional, Tuple

import torch

from espnet_otreg.ot.costs import compute_dtype

GRAD_MODES = ("envelope", "autodiff", "detach")


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

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Problem:
    """A validated, padded batch of OT problems, ready for the Sinkhorn loop."""

    cost: torch.Tensor  # (B, N, M) compute dtype, 0 on padding, keeps autograd
    support: torch.Tensor  # (B, N, M) bool: a_i > 0 and b_j > 0 on real entries
    a: torch.Tensor  # (B, N) real marginals (0 on padding, 0 for empty pairs)
    b: torch.Tensor  # (B, M)
    log_a: torch.Tensor  # (B, N) solver marginals (dummy for empty pairs), -inf off
    log_b: torch.Tensor  # (B, M)
    nonempty: torch.Tensor  # (B,) bool


def check_positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not (float(value) > 0.0) or math.isinf(float(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_grad_mode(grad: str) -> None:
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")


def _check_mask(name: str, mask, shape, device) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor (True = real position), got {mask.dtype}")
    return mask.to(device)


def _marginal(name, w, mask, real, dtype) -> torch.Tensor:
    """User marginal (zeroed on padding) or uniform over the real positions."""
    if w is None:
        return mask.to(dtype) / mask.sum(-1, keepdim=True).clamp_min(1).to(dtype)
    if tuple(w.shape) != tuple(mask.shape):
        raise ValueError(f"{name} must have shape {tuple(mask.shape)}, got {tuple(w.shape)}")
    w = w.to(dtype)
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} must be finite and non-negative")
    return w.masked_fill(~real, 0.0)


def prepare(cost, x_mask, y_mask, a, b) -> Problem:
    """Validate shapes and build marginals for a padded batch of problems."""
    if not torch.is_tensor(cost) or cost.dim() != 3:
        shape = tuple(cost.shape) if torch.is_tensor(cost) else type(cost).__name__
        raise ValueError(
            f"cost must be a (B, N, M) tensor, got {shape}; for one pair use cost[None]"
        )
    B, N, M = cost.shape
    if N == 0 or M == 0:
        raise ValueError(f"cost has an empty dimension: {tuple(cost.shape)}")
    dev = cost.device
    x_mask = _check_mask("x_mask", x_mask, (B, N), dev)
    y_mask = _check_mask("y_mask", y_mask, (B, M), dev)
    dt = compute_dtype(cost)
    nonempty = x_mask.any(-1) & y_mask.any(-1)
    real_x = x_mask & nonempty[:, None]
    real_y = y_mask & nonempty[:, None]
    a_real = _marginal("a", a, real_x, real_x, dt)
    b_real = _marginal("b", b, real_y, real_y, dt)
    # An empty pair is solved as a dummy all-real uniform problem (no NaNs); its plan
    # is zeroed afterwards.
    a_solve = torch.where(nonempty[:, None], a_real, torch.full_like(a_real, 1.0 / N))
    b_solve = torch.where(nonempty[:, None], b_real, torch.full_like(b_real, 1.0 / M))
    support = (a_real > 0)[:, :, None] & (b_real > 0)[:, None, :]
    cost = cost.to(dt).masked_fill(~(real_x[:, :, None] & real_y[:, None, :]), 0.0)
    return Problem(
        cost=cost,
        support=support,
        a=a_real,
        b=b_real,
        log_a=a_solve.log(),
        log_b=b_solve.log(),
        nonempty=nonempty,
    )


def kernel(cost: torch.Tensor, problem: Problem, epsilon: float) -> torch.Tensor:
    """Log-kernel ``K = -C / epsilon + log a_i + log b_j``, 0 off the support.

    The reference measure ``a b^T`` of ``KL(P | a b^T)`` sits inside the kernel; for
    balanced OT this only shifts the potentials, for unbalanced OT it is what makes
    the objective the one in the module docstring (and POT's ``reg_type="kl"``).
    """
    live = (problem.log_a > -math.inf)[:, :, None] & (problem.log_b > -math.inf)[:, None, :]
    K = -cost / epsilon + problem.log_a[:, :, None] + problem.log_b[:, None, :]
    return torch.where(live, K, torch.zeros_like(K))


def init_potentials(problem: Problem, init, epsilon: float):
    """Log-scalings ``(u, v)`` with ``P = exp(K + u_i + v_j)``; ``-inf`` off the support.

    ``init`` holds cost-unit potentials ``(f, g)`` (``P = exp((f_i + g_j - C_ij)/eps)``),
    so ``u = f / eps - log a``.
    """
    off_a = problem.log_a == -math.inf
    off_b = problem.log_b == -math.inf
    if init is None:
        u = torch.zeros_like(problem.log_a)
        v = torch.zeros_like(problem.log_b)
    else:
        f, g = init
        if tuple(f.shape) != tuple(off_a.shape) or tuple(g.shape) != tuple(off_b.shape):
            raise ValueError(
                f"init potentials must have shapes {tuple(off_a.shape)} and "
                f"{tuple(off_b.shape)}, got {tuple(f.shape)} and {tuple(g.shape)}"
            )
        u = f.detach().to(problem.log_a.dtype) / epsilon - problem.log_a
        v = g.detach().to(problem.log_b.dtype) / epsilon - problem.log_b
        u = torch.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0)
        v = torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    return u.masked_fill(off_a, -math.inf), v.masked_fill(off_b, -math.inf)


def sinkhorn_loop(
    K: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    phi: Optional[float],
    max_iter: int,
    tol: float,
    check_every: int,
    early_stop: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-domain Sinkhorn iterations on a padded batch.

    Balanced (``phi is None``)::

        u <- log a - LSE_j(K_ij + v_j);   v <- log b - LSE_i(K_ij + u_i)

    Unbalanced (KL-relaxed marginals, ``phi = tau / (tau + epsilon)``)::

        u <- phi (log a - LSE_j(K_ij + v_j));   same for v

    The convergence error is measured every ``check_every`` iterations on device,
    reusing the row log-sum-exp of the next update (no extra pass over ``K``). With
    ``early_stop`` the loop leaves once every pair has converged, which costs one host
    sync per check; without it, no host sync happens at all.

    Returns ``(u, v, n_iter, converged, error)``.
    """
    B = K.shape[0]
    dev = K.device
    Kt = K.transpose(1, 2).contiguous()  # both reductions run over a contiguous dim
    a = log_a.exp()
    real_a = log_a > -math.inf
    converged = torch.zeros(B, dtype=torch.bool, device=dev)
    n_iter = torch.full((B,), max_iter, dtype=torch.long, device=dev)
    error = torch.full((B,), math.inf, dtype=K.dtype, device=dev)

    for it in range(max_iter + 1):
        lse_r = torch.logsumexp(K + g[:, None, :], dim=-1)
        f_new = log_a - lse_r if phi is None else phi * (log_a - lse_r)
        if it > 0 and (it % check_every == 0 or it == max_iter):
            if phi is None:
                # Columns are exact after a g-update; the row mass error is left.
                error = (torch.exp(f + lse_r) - a).abs().sum(-1)
            else:
                delta = torch.where(real_a, (f_new - f).abs(), torch.zeros_like(f))
                error = delta.amax(-1)
            newly = (error <= tol) & ~converged
            n_iter = torch.where(newly, torch.full_like(n_iter, it), n_iter)
            converged = converged | newly
            if it == max_iter or (early_stop and bool(converged.all())):
                break
        f = f_new
        lse_c = torch.logsumexp(Kt + f[:, None, :], dim=-1)
        g = log_b - lse_c if phi is None else phi * (log_b - lse_c)
    return f, g, n_iter, converged, error


def log_plan(K, f, g):
    return K + f[:, :, None] + g[:, None, :]


def entropic_terms(
    problem: Problem,
    K: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    plan: torch.Tensor,
    epsilon: float,
    tau: Optional[float],
) -> torch.Tensor:
    """``epsilon * KL(P | a b^T)`` (+ ``tau * [KL(P 1 | a) + KL(P^T 1 | b)]``), per pair.

    KL is the generalised one, ``sum p log(p/q) - p + q``, as in POT. Computed from the
    log-plan so that autodiff never sees ``log 0``.
    """
    s = problem.support
    log_ratio = log_plan(K, f, g) - problem.log_a[:, :, None] - problem.log_b[:, None, :]
    log_ratio = torch.where(s, log_ratio, torch.zeros_like(log_ratio))
    mass = plan.sum((1, 2))
    kl = (plan * log_ratio).sum((1, 2)) - mass + problem.a.sum(-1) * problem.b.sum(-1)
    out = epsilon * kl
    if tau is not None:
        out = out + tau * (_kl_vec(plan.sum(-1), problem.a) + _kl_vec(plan.sum(-2), problem.b))
    return out


def _kl_vec(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    live = w > 0
    one = torch.ones_like(m)
    m_safe = torch.where(live, m, one)
    w_safe = torch.where(live, w, one)
    t = m_safe * torch.log(m_safe.clamp_min(torch.finfo(m.dtype).tiny) / w_safe) - m_safe + w_safe
    return torch.where(live, t, torch.zeros_like(t)).sum(-1)


def real_plan(problem: Problem, K, f, g) -> torch.Tensor:
    """The plan on real entries, exactly 0 on padding and for empty pairs."""
    plan = torch.exp(log_plan(K, f, g))
    keep = problem.nonempty[:, None, None] & problem.support
    return torch.where(keep, plan, torch.zeros_like(plan))


def potentials_out(problem: Problem, u, v, epsilon):
    """Cost-unit potentials ``f = eps (u + log a)``, ``-inf`` off the real support."""
    f = torch.where(problem.a > 0, epsilon * (u + problem.log_a), torch.full_like(u, -math.inf))
    g = torch.where(problem.b > 0, epsilon * (v + problem.log_b), torch.full_like(v, -math.inf))
    return f, g
