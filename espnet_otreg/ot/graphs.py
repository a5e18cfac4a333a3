"""Edge-cost matrices of the graphs that Gromov-Wasserstein matches, dense or banded.

A graph on ``L`` nodes has edge costs ``C`` ``(B, L, L)``. With a window ``ws`` (GM-OT,
arXiv 2505.13079) only edges with ``|i - k| <= ws`` exist, and the costs are stored as a
band ``(B, L, 2 ws + 1)``::

    band[b, i, t + ws] = C[b, i, i + t],    -ws <= t <= ws

with 0 where ``i + t`` falls outside ``[0, L)``. Products with a band cost
``O(L ws M)`` instead of ``O(L^2 M)``.

FGW only needs a few products with ``C``, the same for both storages:
``matvec(w) = C w``, ``lmul(R) = C R`` and ``rmul(P) = P C^T``. :class:`DenseGraph`
and :class:`BandedGraph` provide them; :func:`to_band` / :func:`from_band` convert.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

__all__ = ["DenseGraph", "BandedGraph", "to_band", "from_band", "band_mask", "band_offsets"]


def band_offsets(ws: int, L: int):
    """``(t, lo, hi)`` for each offset ``t``: rows ``lo <= i < hi`` have ``i + t`` in range."""
    for t in range(-ws, ws + 1):
        lo, hi = max(0, -t), min(L, L - t)
        if lo < hi:
            yield t, lo, hi


def shift(x: torch.Tensor, t: int, dim: int = 1) -> torch.Tensor:
    """``y[..., i, ...] = x[..., i + t, ...]`` along ``dim``, 0 where ``i + t`` is out of range."""
    L = x.shape[dim]
    if t == 0:
        return x
    if abs(t) >= L:
        return torch.zeros_like(x)
    pad = [0, 0] * (x.dim() - 1 - dim)
    if t > 0:
        return F.pad(x.narrow(dim, t, L - t), pad + [0, t])
    return F.pad(x.narrow(dim, 0, L + t), pad + [-t, 0])


def to_band(c: torch.Tensor, ws: int) -> torch.Tensor:
    """The band ``(B, L, 2 ws + 1)`` of a dense ``(B, L, L)`` matrix (entries outside
    the window are dropped)."""
    L = c.shape[-1]
    cols = []
    for t in range(-ws, ws + 1):
        if abs(t) >= L:
            cols.append(c.new_zeros(c.shape[:-1]))
            continue
        d = torch.diagonal(c, offset=t, dim1=1, dim2=2)  # C[i, i + t] for i in [lo, hi)
        cols.append(F.pad(d, (max(0, -t), max(0, t))))
    return torch.stack(cols, -1)


def from_band(band: torch.Tensor, ws: int) -> torch.Tensor:
    """The dense ``(B, L, L)`` matrix of a band (0 outside the window), one gather."""
    B, L, W = band.shape
    i = torch.arange(L, device=band.device)
    off = i[None, :] - i[:, None]  # k - i
    idx = torch.where(off.abs() <= ws, off + ws, torch.full_like(off, W))  # W: a zero column
    return torch.gather(F.pad(band, (0, 1)), 2, idx.expand(B, L, L))


def band_mask(mask: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, L, 2 ws + 1)`` 0/1: the edge ``(i, i + t)`` exists (both ends real, in range)."""
    m = mask.float() if not mask.is_floating_point() else mask
    return torch.stack([m * shift(m, t) for t in range(-ws, ws + 1)], -1)


class DenseGraph:
    """Edge costs as a full ``(B, L, L)`` matrix. With ``symmetric`` the products use
    ``C`` for ``C^T`` (no transposed operand: faster vector-matrix products on CPU)."""

    def __init__(self, c: torch.Tensor, symmetric: bool = True):
        self.c, self.symmetric = c, symmetric

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor], elementwise: bool = False) -> "DenseGraph":
        """``fn`` applied to the matrix (``elementwise``: ``fn(0) = 0`` entrywise)."""
        return DenseGraph(fn(self.c), self.symmetric)

    def masked(self, mask: torch.Tensor) -> "DenseGraph":
        """Zero the edges that touch a padded node (``mask`` float ``(B, L)``)."""
        return self.map(lambda c: c * (mask[:, :, None] * mask[:, None, :]))

    def t(self) -> "DenseGraph":
        return DenseGraph(self.c.transpose(1, 2), self.symmetric)

    def _ct(self):
        return self.c if self.symmetric else self.c.transpose(1, 2)

    def matvec(self, w: torch.Tensor) -> torch.Tensor:
        """``C w`` ``(B, L)``, as the vector-matrix product ``w^T C^T`` (faster on CPU
        than a batched matrix-vector product)."""
        return torch.bmm(w.unsqueeze(1), self._ct()).squeeze(1)

    def rmul(self, p: torch.Tensor) -> torch.Tensor:
        """``P C^T`` for ``P`` ``(B, R, L)``."""
        return torch.bmm(p, self._ct())

    def lmul(self, r: torch.Tensor, base: Optional[torch.Tensor] = None,
             alpha: float = 1.0) -> torch.Tensor:
        """``C R`` for ``R`` ``(B, L, R)``; ``base + alpha C R`` with ``base`` (one fused GEMM)."""
        if base is None:
            return torch.bmm(self.c, r) if alpha == 1.0 else alpha * torch.bmm(self.c, r)
        return torch.baddbmm(base, self.c, r, alpha=alpha)


class BandedGraph:
    """Edge costs as a band ``(B, L, 2 ws + 1)`` (module docstring). ``symmetric``
    lets the dense form of a short graph use ``C`` for ``C^T`` (as :class:`DenseGraph`).

    Products go through the block-tridiagonal form of the matrix: with blocks of
    ``s >= ws`` rows, row block ``J`` only meets column blocks ``J - 1, J, J + 1``, so
    ``C R`` and ``P C^T`` are one batched GEMM each over ``L / s`` blocks of ``(s, 3 s)``
    (``3 s L`` multiply-adds per output column instead of ``L^2``). On a CPU that beats
    ``2 ws + 1`` shifted multiply-adds over the output (memory-bound passes), and the
    dense product from about ``L = 300`` nodes on; shorter graphs use the dense form.
    """

    # Below this many nodes a dense GEMM beats the block form's copies (measured on a
    # 2-core CPU: crossover near L = 300 at ws = 5); the dense matrix is built once.
    DENSE_MAX = 256

    def __init__(self, band: torch.Tensor, ws: int, block: int = 16, symmetric: bool = False):
        if band.dim() != 3 or band.shape[-1] != 2 * ws + 1:
            raise ValueError(f"a band for ws={ws} must be (B, L, {2 * ws + 1}), got {tuple(band.shape)}")
        self.c, self.ws, self.symmetric = band, ws, symmetric
        self.s = max(ws, 1, min(block, band.shape[1]))
        self._blocks = self._dense = None

    def dense(self) -> Optional[DenseGraph]:
        """The dense form when ``L <= DENSE_MAX`` (built once), else None."""
        if self._dense is None and self.c.shape[1] <= self.DENSE_MAX:
            self._dense = DenseGraph(from_band(self.c, self.ws), self.symmetric)
        return self._dense

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor], elementwise: bool = False) -> "BandedGraph":
        """``fn`` applied to the band. With ``elementwise`` (``fn(0) = 0`` entrywise, e.g.
        a square or detach) a dense form already built is mapped too, not rebuilt."""
        out = BandedGraph(fn(self.c), self.ws, self.s, self.symmetric)
        if elementwise and self._dense is not None:
            out._dense = self._dense.map(fn)
        return out

    def masked(self, mask: torch.Tensor) -> "BandedGraph":
        return self.map(lambda c: c * band_mask(mask, self.ws))

    def t(self) -> "BandedGraph":
        """``C^T``: ``band^T[i, t + ws] = C[i + t, i] = band[i + t, ws - t]``."""
        ws = self.ws
        cols = [shift(self.c[:, :, ws - t], t) for t in range(-ws, ws + 1)]
        return BandedGraph(torch.stack(cols, -1), ws, self.s, self.symmetric)

    def blocks(self) -> torch.Tensor:
        """``G`` ``(B, nb, s, 3 s)``: ``G[b, J, a, k s + c] = C[J s + a, (J + k - 1) s + c]``,
        gathered from the band (entries outside it are 0)."""
        if self._blocks is None:
            B, L, W = self.c.shape
            s, ws = self.s, self.ws
            nb = -(-L // s)
            # Rows padded to nb * s; one zero column where the gather falls off the band.
            band = F.pad(self.c, (0, 1, 0, nb * s - L)).view(B, nb, s, W + 1)
            a = torch.arange(s, device=band.device)[:, None]
            kc = torch.arange(3 * s, device=band.device)[None, :]
            off = kc - s - a  # t = column - row
            idx = torch.where(off.abs() <= ws, off + ws, torch.full_like(off, W))
            self._blocks = torch.gather(band, 3, idx.expand(B, nb, s, 3 * s))
        return self._blocks

    def matvec(self, w: torch.Tensor) -> torch.Tensor:
        """``(C w)_i = sum_t band[i, t + ws] w[i + t]``."""
        if self.dense() is not None:
            return self.dense().matvec(w)
        return self.lmul(w.unsqueeze(-1)).squeeze(-1)

    def _windows(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Windows of 3 blocks along ``dim`` (length L): ``(..., nb, ..., 3 s)`` views."""
        s, L = self.s, x.shape[dim]
        nb = -(-L // s)
        pad = [0, 0] * (x.dim() - 1 - dim) + [s, nb * s - L + s]
        return F.pad(x, pad).unfold(dim, 3 * s, s)

    def lmul(self, r: torch.Tensor, base: Optional[torch.Tensor] = None,
             alpha: float = 1.0) -> torch.Tensor:
        """``C R`` for ``R`` ``(B, L, K)`` (``base + alpha C R``)."""
        if self.dense() is not None:
            return self.dense().lmul(r, base, alpha)
        B, L, K = r.shape
        win = self._windows(r, 1)  # (B, nb, K, 3 s)
        out = torch.matmul(self.blocks(), win.transpose(-1, -2))  # (B, nb, s, K)
        out = out.reshape(B, -1, K)[:, :L]
        if base is None:
            return out if alpha == 1.0 else alpha * out
        return torch.add(base, out, alpha=alpha)

    def rmul(self, p: torch.Tensor) -> torch.Tensor:
        """``P C^T`` for ``P`` ``(B, R, L)``."""
        if self.dense() is not None:
            return self.dense().rmul(p)
        B, R, L = p.shape
        win = self._windows(p, 2).transpose(1, 2)  # (B, nb, R, 3 s)
        out = torch.matmul(win, self.blocks().transpose(-1, -2))  # (B, nb, R, s)
        return out.transpose(1, 2).reshape(B, R, -1)[:, :, :L]
