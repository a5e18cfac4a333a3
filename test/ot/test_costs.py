import pytest
import torch

from espnet_otreg.ot import cosine, costs, sqeuclidean, structure, temporal_prior
from ot_helpers import lengths_to_mask


def test_sqeuclidean_matches_cdist_and_masks_padding():
    x, y = torch.randn(3, 7, 4), torch.randn(3, 5, 4)
    xm, ym = lengths_to_mask([7, 3, 1], 7), lengths_to_mask([5, 5, 2], 5)
    c = sqeuclidean(x, y, xm, ym)
    ref = torch.cdist(x, y) ** 2
    pair = xm[:, :, None] & ym[:, None, :]
    torch.testing.assert_close(c[pair], ref[pair], atol=1e-4, rtol=1e-4)
    assert (c[~pair] == 0).all() and (c >= 0).all()


def test_cosine_range_zero_vector_and_bf16():
    x = torch.randn(2, 4, 8, dtype=torch.bfloat16)
    y = torch.randn(2, 3, 8, dtype=torch.bfloat16)
    x[0, 0] = 0  # a zero vector has cost 1, not NaN
    c = cosine(x, y)
    assert c.dtype == torch.float32 and torch.isfinite(c).all()
    assert c.min() >= 0 and c.max() <= 2
    torch.testing.assert_close(c[0, 0], torch.ones(3))
    ref = 1 - torch.nn.functional.cosine_similarity(
        x.float()[:, :, None], y.float()[:, None], dim=-1
    )
    torch.testing.assert_close(c[:, 1:], ref[:, 1:], atol=1e-5, rtol=0)


def test_temporal_prior_uses_each_pairs_true_length():
    xm = lengths_to_mask([3, 2], 6)
    ym = lengths_to_mask([3, 1], 3)
    t = temporal_prior(xm, ym)
    assert t.shape == (2, 6, 3)
    # Equal lengths: zero on the diagonal, the paper's |i/N - j/M|.
    torch.testing.assert_close(t[0, :3, :3].diagonal(), torch.zeros(3))
    torch.testing.assert_close(t[0, 0, 2], torch.tensor(2 / 3))
    assert (t[0, 3:] == 0).all()
    # Pair 1: N=2, M=1 -> centres 1/4, 3/4 vs 1/2.
    torch.testing.assert_close(t[1, :2, 0], torch.tensor([0.25, 0.25]))
    assert (t[1, 2:] == 0).all() and (t[1, :, 1:] == 0).all()
    assert t.max() < 1


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean", "euclidean"])
def test_structure_symmetric_zero_diagonal_padding(metric):
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    m = lengths_to_mask([6, 4], 6)
    c = structure(x, m, metric)
    torch.testing.assert_close(c, c.transpose(1, 2))
    assert (c.diagonal(dim1=1, dim2=2) == 0).all()
    assert (c[1, 4:] == 0).all() and (c[1, :, 4:] == 0).all()
    c.sum().backward()  # euclidean must not give inf gradients at the zero diagonal
    assert torch.isfinite(x.grad).all()


def test_structure_window_keeps_only_near_edges():
    x = torch.randn(1, 8, 3)
    full = structure(x, metric="sqeuclidean")
    win = structure(x, metric="sqeuclidean", window=2)
    i, k = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    near = (i - k).abs() <= 2
    torch.testing.assert_close(win[0][near], full[0][near])
    assert (win[0][~near] == 0).all()


def test_cost_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(B, length, dim\)"):
        cosine(torch.randn(4, 3), torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match="feature dim"):
        sqeuclidean(torch.randn(1, 4, 3), torch.randn(1, 4, 2))
    with pytest.raises(ValueError, match="x_mask must have shape"):
        cosine(torch.randn(1, 4, 3), torch.randn(1, 2, 3), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="metric"):
        structure(torch.randn(1, 4, 3), metric="manhattan")
    with pytest.raises(ValueError, match="window"):
        structure(torch.randn(1, 4, 3), window=-1)


def _plain(metric, x, y, xm, ym):
    """The costs written as plain autograd expressions (the reference)."""
    if metric == "sqeuclidean":
        c = (x.pow(2).sum(-1, keepdim=True) + y.pow(2).sum(-1).unsqueeze(-2)
             - 2 * torch.bmm(x, y.transpose(1, 2))).clamp_min(0)
    else:
        xn = torch.nn.functional.normalize(x, dim=-1, eps=1e-8)
        yn = torch.nn.functional.normalize(y, dim=-1, eps=1e-8)
        c = (1 - torch.bmm(xn, yn.transpose(1, 2))).clamp(0, 2)
    return c.masked_fill(~(xm[:, :, None] & ym[:, None, :]), 0)


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_pair_cost_functions_match_plain_autograd(metric):
    """The written-out backward (three batched products) equals autograd's."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    xm = torch.arange(5)[None] < torch.tensor([5, 3, 1])[:, None]
    ym = torch.arange(6)[None] < torch.tensor([6, 2, 4])[:, None]
    fn = getattr(costs, metric)
    w = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    got, want = fn(x, y, xm, ym), _plain(metric, x, y, xm, ym)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    for a, b in zip(torch.autograd.grad((got * w).sum(), (x, y)),
                    torch.autograd.grad((want * w).sum(), (x, y))):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y, xm, ym), (x, y))
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y), (x, y))
    xb = x.detach().bfloat16().requires_grad_(True)
    c = fn(xb, y.detach().bfloat16())
    c.sum().backward()
    assert c.dtype == torch.float32 and xb.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_costs_under_autocast_are_float32_forward_and_backward(metric):
    """Under AMP (bf16 autocast, as --use_amp trains) a bf16 x and a float32 y give a
    float32 cost equal to the float32 computation, and gradients of each input's dtype
    (the custom backward runs outside autocast)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 8, generator=g).bfloat16().requires_grad_(True)
    y = torch.randn(2, 4, 8, generator=g).requires_grad_(True)
    fn = getattr(costs, metric)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = fn(x, y)
    c.sum().backward()
    assert c.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
    assert y.grad.dtype == torch.float32 and torch.isfinite(y.grad).all()
    want = fn(x.detach().float(), y.detach())
    torch.testing.assert_close(c.detach(), want, atol=1e-6, rtol=1e-6)
