"""lengths_to_mask: zero lengths give empty rows; padded size given or taken from lengths."""

import torch

from espnet_otreg.ot import lengths_to_mask


def test_lengths_to_mask():
    m = lengths_to_mask(torch.tensor([0, 2, 3]), 4)
    assert m.dtype == torch.bool and m.tolist() == [
        [False, False, False, False],
        [True, True, False, False],
        [True, True, True, False],
    ]
    assert lengths_to_mask(torch.tensor([1, 3])).shape == (2, 3)
    assert lengths_to_mask(torch.tensor([], dtype=torch.long)).shape == (0, 0)
