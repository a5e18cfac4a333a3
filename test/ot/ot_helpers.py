"""Padded random OT problems shared by the solver tests."""

import numpy as np
import torch

from espnet_otreg.ot import costs


def lengths_to_mask(lengths, max_len):
    lengths = torch.as_tensor(lengths)
    return torch.arange(max_len)[None, :] < lengths[:, None]


def random_batch(x_lens, y_lens, dim=6, dtype=torch.float64, seed=0):
    """Features, masks and a cosine cost for a padded batch with mixed lengths."""
    g = torch.Generator().manual_seed(seed)
    B, N, M = len(x_lens), max(max(x_lens), 1), max(max(y_lens), 1)
    x = torch.randn(B, N, dim, generator=g, dtype=dtype)
    y = torch.randn(B, M, dim, generator=g, dtype=dtype)
    xm, ym = lengths_to_mask(x_lens, N), lengths_to_mask(y_lens, M)
    # Padding holds garbage on purpose: the solvers must ignore it.
    x = torch.where(xm[..., None], x, torch.full_like(x, 1e3))
    y = torch.where(ym[..., None], y, torch.full_like(y, -1e3))
    return x, y, xm, ym, costs.cosine(x, y, xm, ym)


def pairs(xm, ym):
    """Yield (b, n, m) for every pair with at least one real element on each side."""
    for b in range(xm.shape[0]):
        n, m = int(xm[b].sum()), int(ym[b].sum())
        if n and m:
            yield b, n, m


def unif(n):
    return np.full(n, 1.0 / n)
