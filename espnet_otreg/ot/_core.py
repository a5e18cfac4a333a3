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
from dataclasses import dataclass
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


def _marginal(name, w, real, dtype) -> torch.Tensor:
    """User marginal (zeroed on padding) or uniform over the real positions."""
    if w is None:
        return real.to(dtype) / real.sum(-1, keepdim=True).clamp_min(1).to(dtype)
    if tuple(w.shape) != tuple(real.shape):
        raise ValueError(f"{name} must have shape {tuple(real.shape)}, got {tuple(w.shape)}")
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
    a_real = _marginal("a", a, real_x, dt)
    b_real = _marginal("b", b, real_y, dt)
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


METHODS = ("stabilized", "log")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def sinkhorn_loop(
    K: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    phi: Optional[float],
    max_iter: int,
    tol: float,
    check_every: int,
    early_stop: bool,
    method: str = "stabilized",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sinkhorn iterations on a padded batch, potentials kept in the log domain.

    Log-domain step, balanced (``phi is None``)::

        u <- log a - LSE_j(K_ij + v_j);   v <- log b - LSE_i(K_ij + u_i)

    Unbalanced (KL-relaxed marginals, ``phi = tau / (tau + epsilon)``)::

        u <- phi (log a - LSE_j(K_ij + v_j));   same for v

    ``method="log"`` runs only such steps (about five passes over ``K`` each).
    ``method="stabilized"`` (Schmitzer 2019; POT's ``sinkhorn_stabilized``) absorbs
    the potentials into ``E = exp(K + u + v)`` every ``check_every`` iterations and
    runs the iterations in between as scaling updates ``s_u <- a / (E s_v)`` (two
    passes over ``E``). The iterates are the same. A pair whose scalings leave the
    float range within a block (cost/epsilon in the thousands) gets that block undone
    and the next block starts with a log-domain step, so it never sees NaN. Log-domain
    steps are run at the start and, with ``early_stop``, only after a block that some
    pair had to undo (the decision rides on the convergence check's host sync);
    without ``early_stop`` one runs before every block and nothing syncs.

    The error is measured every ``check_every`` iterations, on device. With
    ``early_stop`` the loop leaves once every pair has converged.

    Returns ``(u, v, n_iter, converged, error)``.
    """
    B = K.shape[0]
    dev = K.device
    a, b = log_a.exp(), log_b.exp()
    real_a, real_b = log_a > -math.inf, log_b > -math.inf
    state = dict(
        converged=torch.zeros(B, dtype=torch.bool, device=dev),
        n_iter=torch.full((B,), max_iter, dtype=torch.long, device=dev),
        error=torch.full((B,), math.inf, dtype=K.dtype, device=dev),
    )

    def record(it, error):
        newly = (error <= tol) & ~state["converged"]
        state["n_iter"] = torch.where(newly, torch.full_like(state["n_iter"], it), state["n_iter"])
        state["converged"] = state["converged"] | newly
        state["error"] = error

    def done(it, ok=None):
        """Stop? And does the next block need a log-domain step? (one host sync)"""
        if it >= max_iter:
            return True, False
        if not early_stop:
            return False, method == "stabilized"
        flags = [state["converged"].all()] + ([] if ok is None else [ok.all()])
        flags = torch.stack(flags).tolist()
        return bool(flags[0]), ok is not None and not flags[-1]

    Kt = K.transpose(1, 2).contiguous()  # both reductions run over a contiguous dim

    def row_step(u, v, measure):
        """Log-domain u-update; with ``measure``, also the error of the state (u, v)."""
        lse_r = torch.logsumexp(K + v[:, None, :], dim=-1)
        u_new = log_a - lse_r if phi is None else phi * (log_a - lse_r)
        if not measure:
            return u_new, None
        if phi is None:
            # Columns are exact after a v-update; the row mass error is left.
            return u_new, (torch.exp(u + lse_r) - a).abs().sum(-1)
        return u_new, torch.where(real_a, (u_new - u).abs(), torch.zeros_like(u)).amax(-1)

    def col_step(u):
        lse_c = torch.logsumexp(Kt + u[:, None, :], dim=-1)
        return log_b - lse_c if phi is None else phi * (log_b - lse_c)

    if method == "log":
        it = 0
        while True:
            check = it > 0 and (it % check_every == 0 or it >= max_iter)
            u_new, error = row_step(u, v, measure=check)
            if check:
                record(it, error)
                if done(it)[0]:
                    break
            u = u_new
            v = col_step(u)
            it += 1
        return u, v, state["n_iter"], state["converged"], state["error"]

    it, need_log = 0, True
    log_error = state["error"]
    while True:
        if need_log:
            u, log_error = row_step(u, v, measure=True)
            v = col_step(u)
            it += 1
        steps = min(check_every - (it % check_every), max_iter - it)
        if steps > 0:
            u, v, ok, error = _scaling_block(K, u, v, a, b, real_a, real_b, phi, steps)
            it += steps
            # An undone block measured nothing: keep what the log step measured.
            record(it, torch.where(ok, error, log_error))
        else:
            ok = None
            record(it, log_error)
        stop, need_log = done(it, ok)
        if stop:
            break
    return u, v, state["n_iter"], state["converged"], state["error"]


def _scaling_block(K, u, v, a, b, real_a, real_b, phi, steps):
    """``steps`` Sinkhorn iterations as scalings of ``E = exp(K + u + v)``.

    Returns the absorbed ``(u, v)`` (unchanged for pairs whose scalings left the float
    range), the per-pair ``ok`` flags and the error after the block (L1 row-marginal
    error if balanced, largest change of ``u`` in the last step if unbalanced).
    """
    E = torch.exp(K + u[:, :, None] + v[:, None, :])  # 0 on padding (u or v = -inf)
    # Padded rows/columns of E are 0. Adding 1 to both sides there keeps their
    # scalings at exactly 1 (not 0 / 0, and no log(0) below): a NaN or inf would
    # leak into autodiff gradients even through entries that are masked later.
    pad_a, pad_b = (~real_a).to(E.dtype), (~real_b).to(E.dtype)
    a1, b1 = a + pad_a, b + pad_b
    # Broadcast-multiply-sum over a contiguous last dim: faster than batched
    # matrix-vector products (bmm) on CPU at these shapes, measured.
    Et = E.transpose(1, 2).contiguous()
    if phi is not None:
        # u_new = phi (log a - log(E s_v) + u)  =>  s_u = (a / E s_v)^phi exp((phi-1) u)
        w_a = torch.exp((phi - 1.0) * torch.where(real_a, u, torch.zeros_like(u)))
        w_b = torch.exp((phi - 1.0) * torch.where(real_b, v, torch.zeros_like(v)))
    s_u, s_v = torch.ones_like(a), torch.ones_like(b)
    for _ in range(steps):
        s_u_prev = s_u
        s_u = a1 / ((E * s_v[:, None, :]).sum(-1) + pad_a)
        if phi is not None:
            s_u = s_u.pow(phi) * w_a
        s_v = b1 / ((Et * s_u[:, None, :]).sum(-1) + pad_b)
        if phi is not None:
            s_v = s_v.pow(phi) * w_b
    if phi is None:
        mass = s_u * (E * s_v[:, None, :]).sum(-1)
        error = (mass - a).abs().sum(-1)  # 0 - 0 on padding
    else:
        change = torch.where(real_a, torch.log(s_u / s_u_prev).abs(), torch.zeros_like(a))
        error = change.amax(-1)
    u_new, v_new = u + torch.log(s_u), v + torch.log(s_v)
    ok = (torch.isfinite(u_new) | ~real_a).all(-1) & (torch.isfinite(v_new) | ~real_b).all(-1)
    ok = ok & torch.isfinite(error)
    error = torch.where(ok, error, torch.full_like(error, math.inf))
    return (
        torch.where(ok[:, None], u_new, u),
        torch.where(ok[:, None], v_new, v),
        ok,
        error,
    )


def log_plan(K, u, v):
    return K + u[:, :, None] + v[:, None, :]


def entropic_terms(
    problem: Problem,
    K: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    plan: torch.Tensor,
    epsilon: float,
    tau: Optional[float],
) -> torch.Tensor:
    """``epsilon * KL(P | a b^T)`` (+ ``tau * [KL(P 1 | a) + KL(P^T 1 | b)]``), per pair.

    KL is the generalised one, ``sum p log(p/q) - p + q``, as in POT. Computed from the
    log-plan so that autodiff never sees ``log 0``.
    """
    s = problem.support
    log_ratio = log_plan(K, u, v) - problem.log_a[:, :, None] - problem.log_b[:, None, :]
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


def real_plan(problem: Problem, K, u, v) -> torch.Tensor:
    """The plan on real entries, exactly 0 on padding and for empty pairs."""
    plan = torch.exp(log_plan(K, u, v))
    keep = problem.nonempty[:, None, None] & problem.support
    return torch.where(keep, plan, torch.zeros_like(plan))


def potentials_out(problem: Problem, u, v, epsilon):
    """Cost-unit potentials ``f = eps (u + log a)``, ``-inf`` off the real support."""
    f = torch.where(problem.a > 0, epsilon * (u + problem.log_a), torch.full_like(u, -math.inf))
    g = torch.where(problem.b > 0, epsilon * (v + problem.log_b), torch.full_like(v, -math.inf))
    return f, g
