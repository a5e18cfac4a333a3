"""Internals shared by the solvers: input checks, marginals, the log-domain Sinkhorn loop.

Conventions (all solvers):

- A problem is a padded batch: ``cost`` ``(B, N, M)``, ``x_mask`` ``(B, N)``,
  ``y_mask`` ``(B, M)`` (bool, True = real position), marginals ``a`` ``(B, N)`` and
  ``b`` ``(B, M)`` (uniform over the real positions by default).
- The loop works on log-scalings ``u``, ``v`` with ``P_ij = exp(K_ij + u_i + v_j)`` and
  ``K = -C / epsilon + log a_i + log b_j``; results report cost-unit potentials ``f``,
  ``g`` with ``P_ij = exp((f_i + g_j - C_ij) / epsilon)``.
- Padding is handled without NaNs: ``K`` is finite on padded entries (0 from
  :func:`kernel`; FGW adds finite products there), ``log a`` / ``log b`` are ``-inf``
  on padded positions, which drives their potentials to ``-inf`` and their plan
  entries to exactly 0. A pair with no real position at all (an empty
  utterance in the batch) is solved as a dummy all-real problem and its plan zeroed.
- Work is done in float32 (float64 stays float64); bf16/fp16 inputs are upcast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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
    a: torch.Tensor  # (B, N) real marginals (0 on padding, 0 for empty pairs)
    b: torch.Tensor  # (B, M)
    log_a: torch.Tensor  # (B, N) solver marginals (dummy for empty pairs), -inf off
    log_b: torch.Tensor  # (B, M)
    nonempty: torch.Tensor  # (B,) bool
    # What the Sinkhorn loop reuses at every call (FGW calls it once per outer step).
    # Masks over (B, N, M) are float 0/1: on CPU, arithmetic with them is several
    # times faster than where/masked_fill with a bool mask (measured).
    a_solve: torch.Tensor  # (B, N) exp(log_a)
    b_solve: torch.Tensor  # (B, M)
    support_f: torch.Tensor  # (B, N, M) float: a_i > 0 and b_j > 0 (0 for empty pairs)
    live_f: torch.Tensor  # (B, N, M) float: log_a_i and log_b_j finite
    _consts: Optional["_LoopConsts"] = field(default=None, repr=False)

    def loop_consts(self) -> "_LoopConsts":
        """Masks in the forms the scaling iterations use, built once per problem."""
        if self._consts is None:
            self._consts = _LoopConsts.build(self)
        return self._consts


def solve_mode(track: bool):
    """Context for a solver's iterations: autograd on with ``track`` (grad="autodiff"),
    else inference mode, which trims per-op overhead (many small ops per iteration).
    Tensors made inside must be cloned before they meet autograd outside."""
    return torch.set_grad_enabled(torch.is_grad_enabled()) if track else torch.inference_mode()


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


def prepare(cost, x_mask, y_mask, a, b, transpose: bool = False) -> Problem:
    """Validate shapes and build marginals for a padded batch of problems.

    With ``transpose``, the problem is built with the two sides swapped (``cost``
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
    # An empty pair is solved as a dummy all-real uniform problem (no NaNs); its plan
    # is zeroed afterwards.
    a_solve = torch.where(nonempty[:, None], a_real, torch.full_like(a_real, 1.0 / N))
    b_solve = torch.where(nonempty[:, None], b_real, torch.full_like(b_real, 1.0 / M))
    cost = cost.masked_fill(~(real_x[:, :, None] & real_y[:, None, :]), 0.0)
    live_f = (a_solve > 0).to(dt)[:, :, None] * (b_solve > 0).to(dt)[:, None, :]
    return Problem(
        cost=cost,
        a=a_real,
        b=b_real,
        log_a=a_solve.log(),
        log_b=b_solve.log(),
        nonempty=nonempty,
        a_solve=a_solve,
        b_solve=b_solve,
        support_f=live_f * nonempty.to(dt)[:, None, None],  # a_solve = a_real if nonempty
        live_f=live_f,
    )


def _chain(x: torch.Tensor, *ops):
    """Apply ``(name, arg)`` tensor ops in turn: in place on a fresh first result when
    autograd is off (one buffer, kept in cache), out of place otherwise."""
    inplace = not torch.is_grad_enabled()
    for i, (name, arg) in enumerate(ops):
        f = getattr(x, name + "_" if inplace and i > 0 else name)
        x = f() if arg is None else f(arg)
    return x


def kernel(
    cost: torch.Tensor,
    problem: Problem,
    epsilon: float,
    scale: float = 1.0,
    row: Optional[torch.Tensor] = None,
    col: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Log-kernel ``K = -C / epsilon + log a_i + log b_j``, 0 off the support.

    The reference measure ``a b^T`` of ``KL(P | a b^T)`` sits inside the kernel; for
    balanced OT this only shifts the potentials, for unbalanced OT it is what makes
    the objective the one in the module docstring (and POT's ``reg_type="kl"``).
    For a cost ``scale * C + r_i + c_j``, pass ``scale``, ``row`` and ``col``: the
    vectors fold into the marginal terms, so the kernel is still four passes.
    """
    log_a = torch.nan_to_num(problem.log_a, neginf=0.0)  # finite, so that 0 * it = 0
    log_b = torch.nan_to_num(problem.log_b, neginf=0.0)
    if row is not None:
        log_a = log_a - row / epsilon
    if col is not None:
        log_b = log_b - col / epsilon
    return _chain(cost, ("mul", -scale / epsilon), ("add", log_a[:, :, None]),
                  ("add", log_b[:, None, :]), ("mul", problem.live_f))


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


# Scalings further than this from 1 (log scale) are folded back into the potentials.
# Kernel entries that underflowed at the last absorption (below e^-88 in float32) then
# stay below e^-28 however the scalings move: negligible, and nothing overflows.
SAFE_LOG_SCALING = 30.0
SAFE_MIN, SAFE_MAX = math.exp(-SAFE_LOG_SCALING), math.exp(SAFE_LOG_SCALING)


@dataclass
class LoopResult:
    """What :func:`sinkhorn_loop` returns; ``plan`` is :func:`real_plan` of ``(u, v)``."""

    u: torch.Tensor
    v: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    error: torch.Tensor
    plan: torch.Tensor


def sinkhorn_loop(
    K: torch.Tensor,
    problem: Problem,
    u: torch.Tensor,
    v: torch.Tensor,
    phi: Optional[float],
    max_iter: int,
    tol: float,
    check_every: int,
    early_stop: bool,
    method: str = "stabilized",
    start_log: bool = True,
    check_early: bool = False,
) -> LoopResult:
    """Sinkhorn iterations on a padded batch, potentials kept in the log domain.

    Log-domain step, balanced (``phi is None``)::

        u <- log a - LSE_j(K_ij + v_j);   v <- log b - LSE_i(K_ij + u_i)

    Unbalanced (KL-relaxed marginals, ``phi = tau / (tau + epsilon)``)::

        u <- phi (log a - LSE_j(K_ij + v_j));   same for v

    ``method="log"`` runs only such steps (about five passes over ``K`` each).

    ``method="stabilized"`` (Schmitzer 2019; POT's ``sinkhorn_stabilized``) absorbs
    the potentials into ``E = exp(K + u + v)`` and iterates on scalings,
    ``s_u <- a / (E s_v)`` and ``s_v <- b / (E^T s_u)``: two batched vector-matrix
    products and two divisions per iteration, with the same iterates. The scalings
    are folded back into ``(u, v)`` (and a new ``E`` built) only at the end, or when
    one strays more than ``e^30`` from 1; a log-domain step follows then, and a pair
    whose scalings left the float range (cost/epsilon in the thousands) gets its
    segment undone, so it never sees NaN. One log-domain step runs at the start
    unless ``start_log`` is False: a warm start from potentials that are already
    close, as in FGW's outer loop.

    The error is measured every ``check_every`` iterations, on device. With
    ``early_stop``, the loop leaves once every pair has converged; the range check
    rides on the same host sync (one per check). ``check_early`` (with ``early_stop``)
    adds checks at about doubling iteration counts below ``check_every`` (2, 4, 8; 3, 6
    after an opening log-domain step), for warm starts, which often converge within
    two or three iterations. Without ``early_stop`` nothing syncs:
    the scalings are absorbed at every check, and a log-domain step follows.
    """
    B = K.shape[0]
    dev = K.device
    log_a, log_b = problem.log_a, problem.log_b
    a = problem.a_solve
    real_a = problem.loop_consts().real_a
    state = dict(
        converged=torch.zeros(B, dtype=torch.bool, device=dev),
        n_iter=torch.zeros(B, dtype=torch.long, device=dev),
        error=torch.full((B,), math.inf, dtype=K.dtype, device=dev),
    )

    def record(it, error):
        # n_iter follows the checks until the pair converges; the last check is at
        # max_iter, so a pair that never converges ends with n_iter = max_iter.
        state["n_iter"] = torch.where(state["converged"], state["n_iter"], it)
        state["converged"] = state["converged"] | (error <= tol)
        state["error"] = error

    Kt = []  # built on first use: a warm start may never take a log-domain step

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
        if not Kt:
            Kt.append(K.transpose(1, 2).contiguous())  # reduce over a contiguous dim
        lse_c = torch.logsumexp(Kt[0] + u[:, None, :], dim=-1)
        return log_b - lse_c if phi is None else phi * (log_b - lse_c)

    def result(u, v, plan=None):
        if plan is None:
            plan = real_plan(problem, K, u, v)
        return LoopResult(u, v, state["n_iter"], state["converged"], state["error"], plan)

    def repaired(u, v, ok):
        """Pairs whose last segment was undone still hold potentials from before it,
        possibly for another kernel (a warm start without an opening log-domain
        step): give them one log-domain step on this ``K`` before returning."""
        u2 = row_step(u, v, measure=False)[0]
        v2 = col_step(u2)
        return torch.where(ok[:, None], u, u2), torch.where(ok[:, None], v, v2)

    if method == "log":
        it = 0
        while True:
            check = it > 0 and (it % check_every == 0 or it >= max_iter)
            u_new, error = row_step(u, v, measure=check)
            if check:
                record(it, error)
                if it >= max_iter or (early_stop and bool(state["converged"].all())):
                    break
            u = u_new
            v = col_step(u)
            it += 1
        return result(u, v)

    scaling = _Scaling(K, problem, phi)
    it, need_log = 0, start_log
    log_error = state["error"]
    while True:
        if need_log:
            u, log_error = row_step(u, v, measure=True)
            v = col_step(u)
            it += 1
            if it >= max_iter:
                record(it, log_error)
                return result(u, v)
        scaling.start(u, v)
        while True:
            steps = min(check_every - (it % check_every), max_iter - it)
            if check_early and early_stop and it < check_every:
                steps = min(steps, max(it, 2))  # the count about doubles
            error = scaling.run(steps)
            it += steps
            if not early_stop:
                # No host sync: absorb at every check, then a log-domain step.
                u, v, ok = scaling.absorb(check=True)
                record(it, torch.where(ok, error, log_error))
                if it >= max_iter:
                    return result(*repaired(u, v, ok))
                need_log = True
                break
            record(it, error)
            # One host sync for both decisions: the extreme scalings and the worst error.
            lo, hi, worst = torch.stack([*scaling.extremes(), error.amax()]).tolist()
            all_safe = SAFE_MIN < lo and hi < SAFE_MAX  # False for NaN
            all_converged = worst <= tol  # False for NaN
            if all_safe and (all_converged or it >= max_iter):
                u, v, _ = scaling.absorb(check=False)
                return result(u, v, scaling.plan())
            if not all_safe:
                # Fold back, then an exact log-domain step: entries of E that
                # underflowed may matter once scalings move that far. A pair whose
                # scalings left the float range is undone; it measured nothing: keep
                # what its log step measured.
                u, v, ok = scaling.absorb(check=True)
                state["error"] = torch.where(ok, error, log_error)
                if all_converged or it >= max_iter:
                    return result(*repaired(u, v, ok))
                need_log = True
                break


@dataclass
class _LoopConsts:
    real_a: torch.Tensor  # (B, N) bool, log_a finite
    real_b: torch.Tensor  # (B, M)
    ones_a: torch.Tensor  # (B, N) float 0/1
    ones_b: torch.Tensor  # (B, M)
    pad: torch.Tensor  # (B, N + M) float: 1 on padding, for both sides at once
    neg_a: torch.Tensor  # (B, N) -a_solve

    @staticmethod
    def build(problem: Problem) -> "_LoopConsts":
        dt = problem.a_solve.dtype
        real_a, real_b = problem.log_a > -math.inf, problem.log_b > -math.inf
        return _LoopConsts(
            real_a=real_a, real_b=real_b, ones_a=real_a.to(dt), ones_b=real_b.to(dt),
            pad=torch.cat([~real_a, ~real_b], -1).to(dt), neg_a=-problem.a_solve,
        )


def exp_log_plan(K, u, v, live_f) -> torch.Tensor:
    """``exp(K + u + v)`` on live entries, exactly 1 off them (padding).

    The potentials are -inf on padding; exp(-inf) is several times slower on CPU
    than exp of a finite number (measured), so padding is zeroed before the exp
    instead. ``K`` and the real potentials must be finite.
    """
    u0, v0 = torch.nan_to_num(u, neginf=0.0), torch.nan_to_num(v, neginf=0.0)
    return _chain(K, ("add", u0[:, :, None]), ("add", v0[:, None, :]), ("mul", live_f), ("exp", None))


class _Scaling:
    """Sinkhorn iterations as scalings ``s_u``, ``s_v`` of ``E = exp(K + u + v)``.

    Off the support (padding), ``E`` is 1 instead of 0 and the marginals are 0 there,
    so padded scalings come out exactly 0 with no division by zero: a NaN or inf would
    leak into autodiff gradients even through entries that are masked later.
    """

    def __init__(self, K, problem: Problem, phi):
        self.K, self.problem, self.phi = K, problem, phi
        self.a, self.b = problem.a_solve, problem.b_solve
        c = problem.loop_consts()
        self.real_a, self.real_b, self.ones_a, self.ones_b = c.real_a, c.real_b, c.ones_a, c.ones_b
        self.pad, self.neg_a = c.pad, c.neg_a
        self.N = c.real_a.shape[1]
        if phi is not None:
            # (a / r)^phi would have an infinite derivative at a = 0: use 1 there and
            # let the weights w (0 on padding) zero the scaling instead.
            self.a1, self.b1 = self.a + self.pad[:, : self.N], self.b + self.pad[:, self.N :]

    def start(self, u, v):
        """Absorb ``(u, v)`` into a new ``E``; scalings restart at 1."""
        E = exp_log_plan(self.K, u, v, self.problem.live_f)
        self.E, self.Et, self.n_rows = E, None, 0
        self.u0, self.v0 = u, v
        self.s_u, self.s_v = self.ones_a, self.ones_b
        self.t = self.log_s = None
        if self.phi is not None:
            # u_new = phi (log a - log(E s_v) + u)  =>  s_u = (a / E s_v)^phi exp((phi-1) u)
            zero_a, zero_b = torch.zeros_like(u), torch.zeros_like(v)
            self.w_a = torch.exp((self.phi - 1.0) * torch.where(self.real_a, u, zero_a)) * self.ones_a
            self.w_b = torch.exp((self.phi - 1.0) * torch.where(self.real_b, v, zero_b)) * self.ones_b
        self.r = self._rows(self.s_v)

    # Vector-matrix products over a contiguous dim: on CPU, 4-10x faster than
    # matrix-vector bmm (measured). Row sums need E^T for that; its copy costs a few
    # products, so the first few row sums multiply and sum instead (a warm start
    # often needs only two or three).
    def _rows(self, s_v):
        self.n_rows += 1
        if self.n_rows <= 3:
            return (self.E * s_v.unsqueeze(1)).sum(-1)
        if self.Et is None:
            self.Et = self.E.transpose(1, 2).contiguous()
        return torch.bmm(s_v.unsqueeze(1), self.Et).squeeze(1)

    def _cols(self, s_u):
        return torch.bmm(s_u.unsqueeze(1), self.E).squeeze(1)

    def run(self, steps: int) -> torch.Tensor:
        """``steps`` iterations; returns the per-pair error after them (L1 row-marginal
        error if balanced, largest change of ``u`` in the last step if unbalanced)."""
        s_u, s_v, r = self.s_u, self.s_v, self.r
        for _ in range(steps):
            s_prev = s_u
            if self.phi is None:
                s_u = self.a / r
                s_v = self.b / self._cols(s_u)
            else:
                s_u = (self.a1 / r).pow(self.phi) * self.w_a
                s_v = (self.b1 / self._cols(s_u)).pow(self.phi) * self.w_b
            r = self._rows(s_v)
        self.s_u, self.s_v, self.r, self.t, self.log_s = s_u, s_v, r, None, None
        if self.phi is None:
            # L1 row-mass error |s_u * (E s_v) - a|, 0 - 0 on padding
            return torch.linalg.vector_norm(torch.addcmul(self.neg_a, s_u, r), ord=1, dim=-1)
        change = torch.log(s_u / s_prev).abs()  # 0 / 0 on padding, masked
        return torch.where(self.real_a, change, torch.zeros_like(change)).amax(-1)

    def _padded(self):
        """``(B, N + M)`` scalings of both sides, 1 on padding."""
        if self.t is None:
            self.t = torch.cat([self.s_u, self.s_v], -1) + self.pad
        return self.t

    def _log_scalings(self):
        if self.log_s is None:  # (B, N + M), 0 on padding
            self.log_s = torch.log(self._padded())
        return self.log_s

    def extremes(self):
        """Smallest and largest scaling in the batch (NaN if any is NaN)."""
        return torch.aminmax(self._padded())

    def absorb(self, check: bool):
        """Fold the scalings into ``(u, v)``. With ``check``, a pair whose scalings are
        not finite and positive keeps the ``(u, v)`` it started from. Returns
        ``(u, v, ok)`` (``ok`` None without ``check``)."""
        log_s = self._log_scalings()
        u, v = self.u0 + log_s[:, : self.N], self.v0 + log_s[:, self.N :]  # -inf stays
        if not check:
            return u, v, None
        ok = torch.isfinite(log_s).all(-1)
        return torch.where(ok[:, None], u, self.u0), torch.where(ok[:, None], v, self.v0), ok

    def plan(self) -> torch.Tensor:
        """``exp(K + u + v)`` after :meth:`absorb`, as ``s_u E s_v`` (no exp)."""
        keep = self.s_u * self.problem.nonempty[:, None].to(self.s_u.dtype)  # 0 on padding
        return _chain(self.E, ("mul", keep[:, :, None]), ("mul", self.s_v[:, None, :]))


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
    log-plan so that autodiff never sees ``log 0``: ``log(P_ij / a_i b_j) = K_ij + u_i
    - log a_i + v_j - log b_j``, with the -inf of padding replaced by 0 (P is 0 there).
    """
    ru = torch.nan_to_num(u - problem.log_a, nan=0.0, posinf=0.0, neginf=0.0)
    rv = torch.nan_to_num(v - problem.log_b, nan=0.0, posinf=0.0, neginf=0.0)
    log_ratio = K + ru[:, :, None] + rv[:, None, :]
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
    return exp_log_plan(K, u, v, problem.live_f) * problem.support_f


def potentials_out(problem: Problem, u, v, epsilon):
    """Cost-unit potentials ``f = eps (u + log a)``, ``-inf`` off the real support."""
    f = torch.where(problem.a > 0, epsilon * (u + problem.log_a), torch.full_like(u, -math.inf))
    g = torch.where(problem.b > 0, epsilon * (v + problem.log_b), torch.full_like(v, -math.inf))
    return f, g
