"""The problem layer: a validated, padded batch of linear OT problems.

A problem is a padded batch: ``cost`` ``(B, N, M)``, ``x_mask`` ``(B, N)``, ``y_mask``
``(B, M)`` (bool, True = real position) and marginals ``a`` ``(B, N)``, ``b``
``(B, M)``, uniform over the real positions by default. Nothing here iterates or
knows about kernels; :mod:`espnet_otreg.ot.kernel` builds the numerics on top.

Conventions shared by every solver:

- Potentials in cost units ``(f, g)``: ``P_ij = exp((f_i + g_j - C_ij) / epsilon)``;
  inside the solvers log-scalings ``u = f / epsilon - log a``, ``v = g / epsilon -
  log b`` of the kernel ``K = -C / epsilon + log a_i + log b_j``.
- Padded positions get ``log a = -inf`` (``log b`` likewise): their potentials are
  ``-inf`` and their plan entries exactly 0. A pair with no real position at all (an
  empty utterance) is solved as a dummy all-real uniform problem and its plan zeroed.
- Work is done in float32 (float64 stays float64); bf16/fp16 inputs are upcast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from espnet_otreg.ot.costs import compute_dtype

GRAD_MODES = ("envelope", "autodiff", "detach")
METHODS = ("stabilized", "log")


@dataclass
class Problem:
    """A padded batch of entropic OT problems (costs, marginals, masks; nothing else)."""

    cost: torch.Tensor  # (B, N, M) compute dtype, 0 on padding, keeps autograd
    a: torch.Tensor  # (B, N) real marginals (0 on padding, 0 for empty pairs)
    b: torch.Tensor  # (B, M)
    a_solve: torch.Tensor  # (B, N) marginals the solver uses (dummy for empty pairs)
    b_solve: torch.Tensor  # (B, M)
    log_a: torch.Tensor  # (B, N) log a_solve, -inf on padding
    log_b: torch.Tensor  # (B, M)
    nonempty: torch.Tensor  # (B,) bool


def check_positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not (float(value) > 0.0) or math.isinf(float(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


Tau = Union[None, float, Tuple[Optional[float], Optional[float]]]


def tau_pair(tau: Tau) -> Tuple[Optional[float], Optional[float]]:
    """``tau`` as ``(tau_a, tau_b)``, the relaxation of each marginal.

    A number relaxes both marginals; a pair relaxes each on its own, with None (or
    ``inf``, POT's spelling of ``reg_m=(inf, tau)``) keeping that marginal hard
    (one-sided unbalanced OT); None is balanced OT.
    """
    bad = ValueError(f"tau must be a number > 0, None or a pair of them, got {tau!r}")
    pair = tuple(tau) if isinstance(tau, (tuple, list)) else (tau, tau)
    if len(pair) != 2:
        raise bad
    out = []
    for name, t in zip(("tau_a", "tau_b"), pair):
        try:
            if t is not None and float(t) == math.inf:
                t = None
        except (TypeError, ValueError):
            raise bad from None
        check_positive(name if isinstance(tau, (tuple, list)) else "tau", t, allow_none=True)
        out.append(None if t is None else float(t))
    return out[0], out[1]


def check_grad_mode(grad: str) -> None:
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


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


def prepare(cost, x_mask, y_mask, a, b, transpose: bool = False) -> Problem:
    """Validate shapes and build the marginals of a padded batch of problems.

    With ``transpose`` the problem is built with its two sides swapped (``cost``
    ``(B, M, N)``, ``a`` and ``b`` exchanged); errors still name the arguments given.
    """
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
    cost = cost.to(dt)
    if transpose:
        cost = cost.transpose(1, 2).contiguous()
        real_x, real_y, a_real, b_real, N, M = real_y, real_x, b_real, a_real, M, N
    # An empty pair is solved as a dummy all-real uniform problem (no NaNs).
    a_solve = torch.where(nonempty[:, None], a_real, torch.full_like(a_real, 1.0 / N))
    b_solve = torch.where(nonempty[:, None], b_real, torch.full_like(b_real, 1.0 / M))
    cost = cost.masked_fill(~(real_x[:, :, None] & real_y[:, None, :]), 0.0)
    return Problem(
        cost=cost, a=a_real, b=b_real, a_solve=a_solve, b_solve=b_solve,
        log_a=a_solve.log(), log_b=b_solve.log(), nonempty=nonempty,
    )


def init_potentials(problem: Problem, init, epsilon: float):
    """Log-scalings ``(u, v)``: zeros, or ``u = f / epsilon - log a`` from cost-unit
    potentials ``init = (f, g)``; ``-inf`` off the support."""
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


def potentials_out(problem: Problem, u, v, epsilon):
    """Cost-unit potentials ``f = epsilon (u + log a)``, ``-inf`` off the real support."""
    f = torch.where(problem.a > 0, epsilon * (u + problem.log_a), torch.full_like(u, -math.inf))
    g = torch.where(problem.b > 0, epsilon * (v + problem.log_b), torch.full_like(v, -math.inf))
    return f, g
