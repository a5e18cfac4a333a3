"""Cost matrices between and within padded sequences.

Every function here works on a padded batch: ``x`` is ``(B, N, D)`` with a boolean
``x_mask`` ``(B, N)`` (True = real position), ``y`` is ``(B, M, D)`` with ``y_mask``.
Entries that touch a padded position are set to 0; the solvers give them no mass
anyway, the zero only keeps padding finite and easy to read.

All costs are computed in float32 (float64 stays float64), so bf16/fp16 features from
mixed-precision training are safe to pass in.

- :func:`sqeuclidean`: ``C_ij = ||x_i - y_j||^2``.
- :func:`cosine`: ``C_ij = 1 - cos(x_i, y_j)``, in ``[0, 2]``.
- :func:`temporal_prior`: ``C_ij = |t_i - s_j|`` with normalised positions, the
  monotonic-alignment prior of TOT-CAKT / GM-OT (weight ``rho`` in those models).
- :func:`structure`: intra-sequence distances ``C_ik = d(x_i, x_k)``, the edge costs of
  the graphs that Gromov-Wasserstein matches, optionally only within a window ``ws``.
"""

from __future__ import annotations

from typing import Optional

import torch

from espnet_otreg.ot.graphs import band_mask

__all__ = ["sqeuclidean", "cosine", "temporal_prior", "structure", "max_cost_scale",
           "compute_dtype"]

_METRICS = ("cosine", "sqeuclidean", "euclidean")


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype OT work is done in: float64 stays float64, everything else float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_features(name: str, x: torch.Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(
            f"{name} must be a padded batch of shape (B, length, dim), got shape "
            f"{tuple(x.shape)}; for a single sequence use {name}[None]"
        )


def _pair_mask(
    x_mask: Optional[torch.Tensor], y_mask: Optional[torch.Tensor]
) -> Optional[torch.Tensor]:
    if x_mask is None and y_mask is None:
        return None
    if x_mask is None:
        return y_mask[:, None, :]
    if y_mask is None:
        return x_mask[:, :, None]
    return x_mask[:, :, None] & y_mask[:, None, :]


def _apply_mask(
    cost: torch.Tensor, x_mask: Optional[torch.Tensor], y_mask: Optional[torch.Tensor]
) -> torch.Tensor:
    pair = _pair_mask(x_mask, y_mask)
    return cost if pair is None else cost.masked_fill(~pair, 0.0)


def _check_pair(x, y, x_mask, y_mask):
    _check_features("x", x)
    _check_features("y", y)
    if x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            "x and y must share batch size and feature dim, got "
            f"x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    for name, m, t in (("x_mask", x_mask, x), ("y_mask", y_mask, y)):
        if m is not None and tuple(m.shape) != tuple(t.shape[:2]):
            raise ValueError(
                f"{name} must have shape {tuple(t.shape[:2])}, got {tuple(m.shape)}"
            )


# The two pair costs below are autograd Functions: plain autograd through their
# expressions revisits several (B, N, M) and (B, N, D) intermediates (measured: about 12
# times one batched product at B=32, N=500, M=100, D=1024, forward+backward). Written
# out, forward and backward are three batched products (the floor for a cost built on
# x y^T) plus one elementwise pass over each gradient, and only x, y and the output
# are kept for the backward.


def _live(c, lo, hi):
    """Where the clamp does not hold; padding (c = 0 = lo) is not live either. At a
    clamp bound itself the distance's gradient is 0, so dropping it changes nothing."""
    return (c > lo) if hi is None else (c > lo) & (c < hi)


def _masked_grad(grad, live):
    return torch.where(live, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))


class _SqEuclidean(torch.autograd.Function):
    """``C_ij = max(|x_i|^2 + |y_j|^2 - 2 <x_i, y_j>, 0)``, 0 on padded pairs.

    With ``G`` the incoming gradient where the clamp does not hold::

        dx = 2 (G 1) o x - 2 G y,    dy = 2 (G^T 1) o y - 2 G^T x
    """

    @staticmethod
    def forward(ctx, x, y, pad):
        # vector_norm reads x once; pow(2).sum() writes a (B, N, D) temporary first.
        xx = torch.linalg.vector_norm(x, dim=-1).square_()
        yy = torch.linalg.vector_norm(y, dim=-1).square_()
        # (|x_i|^2 + |y_j|^2) first: C stays exactly symmetric for y = x.
        c = torch.add(xx[:, :, None], yy[:, None, :])
        c = c.sub_(torch.bmm(x, y.transpose(1, 2)), alpha=2.0).clamp_min_(0.0)
        if pad is not None:
            c = c.masked_fill_(pad, 0.0)
        ctx.save_for_backward(x, y, c)
        return c

    @staticmethod
    def backward(ctx, grad):
        x, y, c = ctx.saved_tensors
        g = _masked_grad(grad, _live(c, 0.0, None)).mul_(-2.0)  # -2 G
        dx = dy = None
        # The product writes the output; one in-place pass adds the norms' part.
        if ctx.needs_input_grad[0]:
            dx = torch.bmm(g, y).addcmul_(x, g.sum(-1, keepdim=True), value=-1.0)
        if ctx.needs_input_grad[1]:
            dy = torch.bmm(g.transpose(1, 2), x).addcmul_(y, g.sum(-2).unsqueeze(-1), value=-1.0)
        return dx, dy, None


class _Cosine(torch.autograd.Function):
    """``C_ij = clamp(1 - S_ij, 0, 2)``, ``S_ij = <x_i, y_j> / (n_i m_j)`` with
    ``n_i = max(|x_i|, eps)``, 0 on padded pairs.

    With ``G`` the incoming gradient where the clamp does not hold and
    ``H_ij = G_ij / (n_i m_j)``::

        dx = (G o S) 1 o x / n^2 - H y,    dy = (G o S)^T 1 o y / m^2 - H^T x

    (the first term only where ``|x_i| > eps``: below, the norm is the constant eps).
    """

    @staticmethod
    def forward(ctx, x, y, pad, eps):
        nx = torch.linalg.vector_norm(x, dim=-1).clamp_min_(eps)
        ny = torch.linalg.vector_norm(y, dim=-1).clamp_min_(eps)
        # One outer product of the inverse norms: C stays exactly symmetric for y = x
        # (two divisions in turn round differently for C_ij and C_ji).
        inv = (1.0 / nx)[:, :, None] * (1.0 / ny)[:, None, :]
        c = torch.bmm(x, y.transpose(1, 2)).mul_(inv).neg_().add_(1.0).clamp_(0.0, 2.0)
        if pad is not None:
            c = c.masked_fill_(pad, 0.0)
        ctx.eps = eps
        ctx.save_for_backward(x, y, c, nx, ny)
        return c

    @staticmethod
    def backward(ctx, grad):
        x, y, c, nx, ny = ctx.saved_tensors
        g = _masked_grad(grad, _live(c, 0.0, 2.0))
        gs = torch.addcmul(g, g, c, value=-1.0)  # G o S, S = 1 - C where live
        h = g.mul_((-1.0 / nx)[:, :, None] * (1.0 / ny)[:, None, :])  # -H, in g's buffer
        dx = dy = None
        if ctx.needs_input_grad[0]:
            wx = torch.where(nx > ctx.eps, gs.sum(-1) / (nx * nx), torch.zeros_like(nx))
            dx = torch.bmm(h, y).addcmul_(x, wx[:, :, None])
        if ctx.needs_input_grad[1]:
            wy = torch.where(ny > ctx.eps, gs.sum(-2) / (ny * ny), torch.zeros_like(ny))
            dy = torch.bmm(h.transpose(1, 2), x).addcmul_(y, wy[:, :, None])
        return dx, dy, None, None


def _exact(x: torch.Tensor):
    """No autocast around the cost Functions: under AMP their products would run in
    bf16/fp16 and hand a half-precision output and gradient to a backward that runs
    outside autocast, next to float32 inputs (a dtype error). Costs stay in the compute
    dtype, as every OT input does."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _padding(x, y, x_mask, y_mask):
    """``(B, N, M)`` bool, True where a pair touches padding (one pass), or None."""
    if x_mask is None and y_mask is None:
        return None
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    if x_mask is None:
        return (~y_mask)[:, None, :].expand(B, N, M)
    if y_mask is None:
        return (~x_mask)[:, :, None].expand(B, N, M)
    return (~x_mask)[:, :, None] | (~y_mask)[:, None, :]


def sqeuclidean(
    x: torch.Tensor,
    y: torch.Tensor,
    x_mask: Optional[torch.Tensor] = None,
    y_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Squared Euclidean cost ``C_ij = ||x_i||^2 + ||y_j||^2 - 2 <x_i, y_j>``.

    Forward and backward are three batched products in all (:class:`_SqEuclidean`).

    Args:
        x: ``(B, N, D)``; y: ``(B, M, D)``; masks ``(B, N)`` / ``(B, M)`` bool or None.

    Returns:
        ``(B, N, M)``, clamped at 0 (the expansion can go slightly negative in float32).
    """
    _check_pair(x, y, x_mask, y_mask)
    dt = compute_dtype(x)
    x, y = x.to(dt), y.to(dt)
    with _exact(x):
        return _SqEuclidean.apply(x, y, _padding(x, y, x_mask, y_mask))


def cosine(
    x: torch.Tensor,
    y: torch.Tensor,
    x_mask: Optional[torch.Tensor] = None,
    y_mask: Optional[torch.Tensor] = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Cosine cost ``C_ij = 1 - <x_i, y_j> / (||x_i|| ||y_j||)``, in ``[0, 2]``.

    A zero vector has cosine 0 with everything (cost 1) instead of NaN (norms below
    ``eps`` count as ``eps``, as in ``torch.nn.functional.normalize``). Forward and
    backward are three batched products in all (:class:`_Cosine`).
    """
    _check_pair(x, y, x_mask, y_mask)
    dt = compute_dtype(x)
    x, y = x.to(dt), y.to(dt)
    with _exact(x):
        return _Cosine.apply(x, y, _padding(x, y, x_mask, y_mask), eps)


def max_cost_scale(cost: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """Each problem's largest cost, ``(B, 1, 1)``, detached: solving on ``cost / scale``
    makes ``epsilon`` relative to it (ott-jax's ``scale_cost="max_cost"``), the same
    sharpness whatever the embedding norms. Padding holds cost 0, so it never wins; the
    scale is a constant for the gradients, and ``floor`` keeps an all-zero problem finite.

    Solving ``cost / s`` with ``epsilon`` is solving ``cost`` with ``epsilon * s``; for
    fused Gromov-Wasserstein (square loss) the structures scale by ``sqrt(s)``.
    """
    return cost.detach().amax(dim=(1, 2), keepdim=True).clamp_min(floor)


def _positions(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Normalised centre positions ``(i + 1/2) / L_b`` of each valid element."""
    lengths = mask.sum(-1, keepdim=True).clamp_min(1).to(dtype)
    idx = torch.arange(mask.shape[-1], device=mask.device, dtype=dtype)
    return (idx + 0.5) / lengths


def temporal_prior(x_mask: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
    """Monotonic-alignment prior ``C_ij = |t_i - s_j|`` from each pair's true lengths.

    The papers (TOT-CAKT 2409.02239, GM-OT 2505.13079) write ``|i/N - j/M|``. We use
    centre positions ``t_i = (i + 1/2)/N_b`` and ``s_j = (j + 1/2)/M_b``: for ``N = M``
    this is the same matrix, and for ``N != M`` the first and last elements of both
    sequences are treated alike. ``N_b``, ``M_b`` are the unpadded lengths of pair b,
    so padding does not stretch the diagonal. Values lie in ``[0, 1)``; padding is 0.

    Args:
        x_mask: ``(B, N)`` bool, True on real frames.
        y_mask: ``(B, M)`` bool, True on real tokens.

    Returns:
        ``(B, N, M)`` float32.
    """
    if x_mask.dim() != 2 or y_mask.dim() != 2 or x_mask.shape[0] != y_mask.shape[0]:
        raise ValueError(
            "temporal_prior expects masks of shape (B, N) and (B, M), got "
            f"{tuple(x_mask.shape)} and {tuple(y_mask.shape)}"
        )
    x_mask, y_mask = x_mask.bool(), y_mask.bool()
    t = _positions(x_mask, torch.float32)
    s = _positions(y_mask, torch.float32)
    return _apply_mask((t[:, :, None] - s[:, None, :]).abs(), x_mask, y_mask)


def structure(
    x: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    metric: str = "cosine",
    window: Optional[int] = None,
    banded: bool = False,
) -> torch.Tensor:
    """Intra-sequence distance matrix ``C_ik = d(x_i, x_k)``: a graph's edge costs.

    Args:
        x: ``(B, L, D)`` node features.
        mask: ``(B, L)`` bool or None.
        metric: ``"cosine"`` (1 - cos, the GM-OT paper's edge cost), ``"sqeuclidean"``
            or ``"euclidean"``.
        window: the GM-OT window ``ws``. When given, only edges with ``|i - k| <= ws``
            exist and every other entry is 0, so the matrix is the weighted adjacency
            of a temporal graph. How FGW treats the absent edges is its
            ``window_mode`` (:func:`espnet_otreg.ot.fused_gromov_wasserstein`).
        banded: with ``window``, return only the band ``(B, L, 2 ws + 1)``,
            ``band[b, i, t + ws] = C[b, i, i + t]`` (:mod:`espnet_otreg.ot.graphs`),
            computed in ``O(L ws D)`` without the dense matrix.

    Returns:
        ``(B, L, L)`` (or the band), symmetric, zero diagonal, zero on padding.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if window is not None and window < 0:
        raise ValueError(f"window (ws) must be >= 0 or None, got {window}")
    if banded:
        if window is None:
            raise ValueError("banded=True needs a window (ws)")
        return _structure_band(x, mask, metric, int(window))
    if metric == "cosine":
        c = cosine(x, x, mask, mask)
    else:
        c = sqeuclidean(x, x, mask, mask)
        if metric == "euclidean":
            c = _sqrt0(c)
    eye = torch.eye(c.shape[-1], dtype=torch.bool, device=c.device)
    c = c.masked_fill(eye, 0.0)
    if window is not None:
        idx = torch.arange(c.shape[-1], device=c.device)
        far = (idx[:, None] - idx[None, :]).abs() > window
        c = c.masked_fill(far, 0.0)
    return c


def _sqrt0(c: torch.Tensor) -> torch.Tensor:
    # sqrt has an infinite derivative at 0: keep exact zeros zero and away from the sqrt.
    return torch.sqrt(c.clamp_min(1e-12)) * (c > 0)


def _structure_band(x, mask, metric, ws):
    """The band of :func:`structure`: one row-wise dot product per offset ``t >= 0``;
    offset ``-t`` is offset ``t`` shifted (the matrix is symmetric)."""
    _check_features("x", x)
    if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"mask must have shape {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    dt = compute_dtype(x)
    x = x.to(dt)
    B, L, _ = x.shape
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=-1, eps=1e-8)
    else:
        sq = x.pow(2).sum(-1)
    pos = [x.new_zeros(B, L)]  # offset 0: the diagonal
    for t in range(1, ws + 1):
        d = x.new_zeros(B, L)
        if t < L:
            dot = (x[:, : L - t] * x[:, t:]).sum(-1)  # <x_i, x_{i+t}>
            if metric == "cosine":
                val = (1.0 - dot).clamp(0.0, 2.0)
            else:
                val = (sq[:, : L - t] + sq[:, t:] - 2.0 * dot).clamp_min(0.0)
                if metric == "euclidean":
                    val = _sqrt0(val)
            d = torch.nn.functional.pad(val, (0, t))
        pos.append(d)
    # C[i, i - t] = C[i - t, i] = pos[t][i - t]
    neg = [torch.nn.functional.pad(p[:, : L - t], (t, 0)) if t < L else p for t, p in
           enumerate(pos)]
    band = torch.stack(neg[:0:-1] + pos, -1)
    m = torch.ones(B, L, dtype=dt, device=x.device) if mask is None else mask.to(dt)
    return band.masked_fill(band_mask(m, ws) == 0, 0.0)  # out of range, padding
