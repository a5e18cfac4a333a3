"""espnet_otreg.ot.measures and max_cost_scale on plans whose answers are known."""

import math

import pytest
import torch

from espnet_otreg import ot
from espnet_otreg.ot import measures


def test_entropy_tokens_per_frame_and_monotonic_of_known_plans():
    eye = torch.eye(4)[None] / 4                     # one token per frame, in order
    flat = torch.full((1, 4, 3), 1 / 12)              # spread evenly
    assert float(measures.plan_entropy(eye)) == pytest.approx(math.log(4))
    assert float(measures.plan_entropy(flat)) == pytest.approx(math.log(12))
    assert float(measures.tokens_per_frame(eye)) == pytest.approx(1.0)
    assert float(measures.tokens_per_frame(flat)) == pytest.approx(3.0)
    back = torch.eye(4).flip(1)[None] / 4             # every step goes back
    mask = torch.tensor([[True, True, True, False]])  # the last frame is padding
    ok, steps = measures.monotonic_steps(torch.cat([eye, back]), torch.cat([mask, mask]))
    assert ok.tolist() == [2, 0] and steps.tolist() == [2, 2]


def test_on_target_mass_and_segment_starts():
    plan = torch.zeros(6, 3)
    plan[[0, 1], 0] = plan[[2, 3], 1] = plan[[4, 5], 2] = 1 / 6
    starts = torch.tensor([0, 2, 4])
    assert float(measures.on_target_mass(plan, starts, slack=0)) == pytest.approx(1.0)
    assert float(measures.on_target_mass(torch.full((6, 3), 1 / 18), starts, slack=0)) == pytest.approx(1 / 3)
    lp = torch.full((6, 4), math.log(0.1 / 3))
    for t, k in enumerate([0, 2, 0, 3, 3, 0]):
        lp[t, k] = math.log(0.9)
    assert measures.ctc_segment_starts(lp, [2, 3]).tolist() == [1, 3]


def test_max_cost_scale_is_each_problems_largest_cost_detached():
    c = torch.tensor([[[0.5, 2.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]], requires_grad=True)
    s = ot.max_cost_scale(c)
    assert s.shape == (2, 1, 1) and not s.requires_grad
    assert s.flatten().tolist() == pytest.approx([2.0, 1e-8], rel=1e-6)
