"""Padding masks from lengths: the one place the package turns lengths into masks.

ESPnet has ``make_pad_mask`` / ``make_non_pad_mask``, but in ESPnet 202511 a 1-D
``lengths`` tensor takes their traceable (ONNX) path, which builds an ``(L+1) x (L+1)``
matrix (32 GB for 3 s of 16 kHz audio in a batch of 8 waveforms) and marks every
position of a zero-length row as real (``make_non_pad_mask(tensor([0]), zeros(1, 2))``
is ``[[True, True]]``). Empty transcripts are a case our losses handle, so we use
this instead.
"""

from typing import Optional

import torch


def lengths_to_mask(lengths: torch.Tensor, max_len: Optional[int] = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_len)`` bool mask, True on the first ``lengths[b]``.

    ``max_len`` None takes ``lengths.max()`` (one host sync); pass the padded size
    (e.g. ``x.size(1)``) in training paths.
    """
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
