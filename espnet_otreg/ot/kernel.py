"""The kernel layer: the Gibbs kernel of a problem and every numerical device.

For a :class:`~espnet_otreg.ot.problem.Problem` and ``epsilon`` the log-kernel is::

    K_ij = -C_ij / epsilon + log a_i + log b_j

(the reference measure ``a b^T`` of ``KL(P | a b^T)`` sits inside it), and with
log-scalings ``u``, ``v`` the plan is ``P_ij = exp(K_ij + u_i + v_j)``. The solvers in
:mod:`espnet_otreg.ot.sinkhorn` only call the small interface below and read like
their equations; everything that makes the iterations fast or safe lives here:

- a :class:`Kernel` updates one side in the log domain (:meth:`Kernel.update_u`,
  :meth:`Kernel.update_v`), measures the marginal error, builds the plan and
  absorbs potentials into a scaling form;
- a :class:`Scaled` kernel ``E = exp(K + u0 + v0)`` (Schmitzer, arXiv 1610.06519)
  updates scalings ``s_u``, ``s_v`` with ``P = diag(s_u) E diag(s_v)`` and folds them
  back into log-scalings.

Devices, each measured on a 2-core CPU: masks over ``(B, N, M)`` are float 0/1
(arithmetic with them is several times faster than ``where``/``masked_fill`` with a
bool mask); the kernel is finite on padding (0) and padding is zeroed before an exp
(``exp(-inf)`` is several times slower than the exp of a finite number); vectors that
only see the marginals are folded into the kernel, which is then four passes;
transposes are cached and only built when a product needs a contiguous reduction;
op chains run in place when autograd is off.

The unbalanced update (KL-relaxed marginals, ``phi_a = tau_a / (tau_a + epsilon)``) is
``u <- phi_a (log a - LSE_j(K_ij + v_j))``, and the same for ``v`` with ``phi_b``; a
side whose ``phi`` is None keeps its marginal hard (``phi = 1``), so ``phi = (None,
None)`` is balanced OT and one None is one-sided unbalanced OT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from espnet_otreg.ot.problem import Problem

# Scalings further than this from 1 (log scale) are folded back into the potentials.
# Kernel entries that underflowed at the last absorption (below e^-88 in float32) then
# stay below e^-28 however the scalings move: negligible, and nothing overflows.
SAFE_LOG_SCALING = 30.0
SAFE_MIN, SAFE_MAX = math.exp(-SAFE_LOG_SCALING), math.exp(SAFE_LOG_SCALING)


def solve_mode(track: bool):
    """Context for a solver's iterations: autograd on with ``track`` (grad="autodiff"),
    else inference mode, which trims per-op overhead (many small ops per iteration).
    Tensors made inside must be cloned before they meet autograd outside."""
    return torch.set_grad_enabled(torch.is_grad_enabled()) if track else torch.inference_mode()


def chain(x: torch.Tensor, *ops) -> torch.Tensor:
    """Apply ``(name, arg)`` tensor ops in turn: in place on a fresh first result when
    autograd is off (one buffer, kept in cache), out of place otherwise."""
    inplace = not torch.is_grad_enabled()
    for i, (name, arg) in enumerate(ops):
        f = getattr(x, name + "_" if inplace and i > 0 else name)
        x = f() if arg is None else f(arg)
    return x


@dataclass
class Masks:
    """A problem's masks in the forms the kernel uses, built once per problem."""

    live: torch.Tensor  # (B, N, M) float: log a_i and log b_j finite
    support: torch.Tensor  # (B, N, M) float: live and the pair non-empty
    real_a: torch.Tensor  # (B, N) bool, log a finite
    real_b: torch.Tensor  # (B, M)
    ones_a: torch.Tensor  # (B, N) float 0/1
    ones_b: torch.Tensor  # (B, M)
    pad: torch.Tensor  # (B, N + M) float: 1 on padding, both sides at once
    neg_a: torch.Tensor  # (B, N) -a_solve

    @staticmethod
    def build(problem: Problem) -> "Masks":
        dt = problem.a_solve.dtype
        real_a, real_b = problem.log_a > -math.inf, problem.log_b > -math.inf
        ones_a, ones_b = real_a.to(dt), real_b.to(dt)
        live = ones_a[:, :, None] * ones_b[:, None, :]
        return Masks(
            live=live, support=live * problem.nonempty.to(dt)[:, None, None],
            real_a=real_a, real_b=real_b, ones_a=ones_a, ones_b=ones_b,
            pad=torch.cat([~real_a, ~real_b], -1).to(dt), neg_a=-problem.a_solve,
        )


def log_kernel(problem: Problem, masks: Masks, cost: torch.Tensor, epsilon: float,
               scale: float = 1.0, row: Optional[torch.Tensor] = None,
               col: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``K = -(scale C + row_i + col_j) / epsilon + log a_i + log b_j``, 0 off the support.

    ``row`` and ``col`` fold into the marginal terms, so the kernel is four passes.
    """
    log_a = torch.nan_to_num(problem.log_a, neginf=0.0)  # finite, so that 0 * it = 0
    log_b = torch.nan_to_num(problem.log_b, neginf=0.0)
    if row is not None:
        log_a = log_a - row / epsilon
    if col is not None:
        log_b = log_b - col / epsilon
    return chain(cost, ("mul", -scale / epsilon), ("add", log_a[:, :, None]),
                 ("add", log_b[:, None, :]), ("mul", masks.live))


def _exp_plan(K, u, v, live) -> torch.Tensor:
    """``exp(K + u + v)`` on live entries, exactly 1 off them (padding). The -inf
    potentials of padding are zeroed first: exp(-inf) is slow on CPU."""
    u0, v0 = torch.nan_to_num(u, neginf=0.0), torch.nan_to_num(v, neginf=0.0)
    return chain(K, ("add", u0[:, :, None]), ("add", v0[:, None, :]), ("mul", live), ("exp", None))


# (phi_a, phi_b), None on a hard side; one number (or None) stands for both sides.
Phi = Union[None, float, Tuple[Optional[float], Optional[float]]]


def _relax(phi: Optional[float], x):
    return x if phi is None else phi * x


class Kernel:
    """The log-kernel ``K`` ``(B, N, M)`` of a problem, with its log-domain steps.

    Build it with :meth:`from_cost`; :meth:`replace` gives the kernel of another cost
    on the same problem (FGW's linearised costs) and shares the masks.
    """

    def __init__(self, problem: Problem, K: torch.Tensor, phi: Phi, masks: Masks):
        self.problem, self.K, self.masks = problem, K, masks
        self.phi_a, self.phi_b = phi if isinstance(phi, (tuple, list)) else (phi, phi)
        self.balanced = self.phi_a is None and self.phi_b is None
        self._Kt = None  # K^T, contiguous: built on the first column update only

    @classmethod
    def from_cost(cls, problem: Problem, epsilon: float, phi: Phi,
                  cost: Optional[torch.Tensor] = None, scale: float = 1.0,
                  row: Optional[torch.Tensor] = None,
                  col: Optional[torch.Tensor] = None) -> "Kernel":
        """Kernel of ``scale * cost + row_i + col_j`` (default cost: the problem's)."""
        masks = Masks.build(problem)
        cost = problem.cost if cost is None else cost
        return cls(problem, log_kernel(problem, masks, cost, epsilon, scale, row, col), phi, masks)

    def replace(self, K: torch.Tensor) -> "Kernel":
        return Kernel(self.problem, K, (self.phi_a, self.phi_b), self.masks)

    def with_cost(self, cost: torch.Tensor, epsilon: float) -> "Kernel":
        return self.replace(log_kernel(self.problem, self.masks, cost, epsilon))

    # ------------------------------------------------------------------ log domain
    def update_u(self, v) -> Tuple[torch.Tensor, torch.Tensor]:
        """``u = phi_a (log a - LSE_j(K_ij + v_j))``; also returns the LSE (for
        :meth:`error`)."""
        lse = torch.logsumexp(self.K + v[:, None, :], dim=-1)
        return _relax(self.phi_a, self.problem.log_a - lse), lse

    def update_v(self, u) -> torch.Tensor:
        """``v = phi_b (log b - LSE_i(K_ij + u_i))``."""
        if self._Kt is None:
            self._Kt = self.K.transpose(1, 2).contiguous()  # reduce over a contiguous dim
        lse = torch.logsumexp(self._Kt + u[:, None, :], dim=-1)
        return _relax(self.phi_b, self.problem.log_b - lse)

    def error(self, u, u_new, lse) -> torch.Tensor:
        """Error of the state ``(u, v)`` whose row update gave ``(u_new, lse)``:
        balanced, the L1 row-marginal error ``|exp(u + lse) - a|`` (columns are exact
        after a column update); unbalanced, ``max |u_new - u|`` over real rows."""
        if self.balanced:
            return (torch.exp(u + lse) - self.problem.a_solve).abs().sum(-1)
        change = torch.where(self.masks.real_a, (u_new - u).abs(), torch.zeros_like(u))
        return change.amax(-1)

    def plan(self, u, v) -> torch.Tensor:
        """``exp(K + u + v)`` on real entries, exactly 0 on padding and empty pairs."""
        return _exp_plan(self.K, u, v, self.masks.live) * self.masks.support

    # ------------------------------------------------------------------ scaling form
    def absorb(self, u, v) -> "Scaled":
        """The scaling form ``E = exp(K + u + v)`` around the log-scalings ``(u, v)``."""
        return Scaled(self, u, v)


def _relaxed_side(phi, marginal, u, real, ones, pad):
    """A side's scaling-form marginal and weight ``w = exp((phi - 1) u0)``: the
    marginal as it is and no weight on a hard side (``phi`` None)."""
    if phi is None:
        return marginal, None
    w = torch.exp((phi - 1.0) * torch.where(real, u, torch.zeros_like(u))) * ones
    return marginal + pad, w


class Scaled:
    """``E = exp(K + u0 + v0)`` and scalings with ``P = diag(s_u) E diag(s_v)``.

    The scaling updates are ``s_u = (a / E s_v)^phi_a w_u``, ``s_v = (b / E^T
    s_u)^phi_b w_v`` with ``w_u = exp((phi_a - 1) u0)`` (1 on a hard side), the log-domain update
    written for ``u = u0 + log s_u``. Off the support ``E`` is 1, not 0, and the
    marginals are 0 there, so padded scalings come out exactly 0 with no division by
    zero (a NaN or inf would leak into autodiff gradients even through entries that
    are masked later).
    """

    def __init__(self, kernel: Kernel, u, v):
        self.kernel, self.u0, self.v0 = kernel, u, v
        p, m = kernel.problem, kernel.masks
        self.E = _exp_plan(kernel.K, u, v, m.live)
        self._Et, self._n_rows = None, 0
        N = u.shape[1]
        # (a / r)^phi has an infinite derivative at a = 0: use 1 there and let the
        # weights (0 on padding) zero the scaling instead.
        self.a, self.w_u = _relaxed_side(kernel.phi_a, p.a_solve, u, m.real_a, m.ones_a,
                                         m.pad[:, :N])
        self.b, self.w_v = _relaxed_side(kernel.phi_b, p.b_solve, v, m.real_b, m.ones_b,
                                         m.pad[:, N:])

    def unit_scalings(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scalings of ``(u0, v0)`` itself: 1 on real positions, 0 on padding."""
        return self.kernel.masks.ones_a, self.kernel.masks.ones_b

    # Vector-matrix products over a contiguous dim: on CPU, 4-10x faster than
    # matrix-vector bmm. Row sums need E^T for that; its copy costs a few products,
    # so the first few row sums multiply and sum instead (a warm start often needs
    # only two or three).
    def rows(self, s_v) -> torch.Tensor:
        """``E s_v``."""
        self._n_rows += 1
        if self._n_rows <= 3:
            return (self.E * s_v.unsqueeze(1)).sum(-1)
        if self._Et is None:
            self._Et = self.E.transpose(1, 2).contiguous()
        return torch.bmm(s_v.unsqueeze(1), self._Et).squeeze(1)

    def cols(self, s_u) -> torch.Tensor:
        """``E^T s_u``."""
        return torch.bmm(s_u.unsqueeze(1), self.E).squeeze(1)

    def update_u(self, rows) -> torch.Tensor:
        """``s_u = (a / E s_v)^phi_a w_u`` from ``rows = E s_v``."""
        if self.kernel.phi_a is None:
            return self.a / rows
        return (self.a / rows).pow(self.kernel.phi_a) * self.w_u

    def update_v(self, cols) -> torch.Tensor:
        """``s_v = (b / E^T s_u)^phi_b w_v`` from ``cols = E^T s_u``."""
        if self.kernel.phi_b is None:
            return self.b / cols
        return (self.b / cols).pow(self.kernel.phi_b) * self.w_v

    def error(self, s_u, s_u_prev, rows) -> torch.Tensor:
        """Balanced: L1 row-marginal error ``|s_u (E s_v) - a|`` (0 - 0 on padding);
        unbalanced: ``max |log s_u - log s_u_prev|`` over real rows."""
        if self.kernel.balanced:
            return torch.linalg.vector_norm(torch.addcmul(self.kernel.masks.neg_a, s_u, rows),
                                            ord=1, dim=-1)
        change = torch.log(s_u / s_u_prev).abs()  # 0 / 0 on padding, masked
        return torch.where(self.kernel.masks.real_a, change, torch.zeros_like(change)).amax(-1)

    def _padded(self, s_u, s_v) -> torch.Tensor:
        """``(B, N + M)`` scalings of both sides, 1 on padding."""
        return torch.cat([s_u, s_v], -1) + self.kernel.masks.pad

    def extremes(self, s_u, s_v) -> Tuple[torch.Tensor, torch.Tensor]:
        """Smallest and largest scaling in the batch (NaN if any is NaN)."""
        return torch.aminmax(self._padded(s_u, s_v))

    def fold(self, s_u, s_v, check: bool):
        """Log-scalings ``u = u0 + log s_u``, ``v = v0 + log s_v``. With ``check``, a pair
        whose scalings are not finite and positive keeps ``(u0, v0)``. Returns ``(u, v,
        ok)`` (``ok`` None without ``check``)."""
        log_s = torch.log(self._padded(s_u, s_v))  # 0 on padding
        N = s_u.shape[1]
        u, v = self.u0 + log_s[:, :N], self.v0 + log_s[:, N:]  # -inf stays
        if not check:
            return u, v, None
        ok = torch.isfinite(log_s).all(-1)
        return torch.where(ok[:, None], u, self.u0), torch.where(ok[:, None], v, self.v0), ok

    def plan(self, s_u, s_v) -> torch.Tensor:
        """``diag(s_u) E diag(s_v)`` (no exp), exactly 0 on padding and empty pairs."""
        keep = s_u * self.kernel.problem.nonempty[:, None].to(s_u.dtype)
        return chain(self.E, ("mul", keep[:, :, None]), ("mul", s_v[:, None, :]))
