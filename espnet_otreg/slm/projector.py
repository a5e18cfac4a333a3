"""Projector: frame stacking by ``k`` then a 2-layer MLP into the LLM's hidden size.

``z_t = W2 act(W1 [h_{kt}; ...; h_{kt+k-1}] + b1) + b2``: ``k`` consecutive encoder
frames are concatenated (the rate drops ``k`` times, e.g. Whisper's 50 Hz -> 10 Hz at
``k = 5``), the trailing ``n mod k`` frames of each utterance are dropped, so an
utterance shorter than ``k`` encoder frames has no speech embedding at all (the model
skips and counts it). This is the usual SLM adapter; the OTReg paper calls it the
adapter/projector without giving its sizes, ``k`` and ``hidden_size`` are our defaults.
"""

from typing import Tuple

import torch


class FrameStackProjector(torch.nn.Module):
    """Args:
    input_size: encoder output size; output_size: the LLM's hidden size.
    stack: frames concatenated per output step (``k``).
    hidden_size: MLP hidden width (default: ``output_size``).
    activation: ``gelu`` or ``relu``.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        stack: int = 5,
        hidden_size: int = 0,
        activation: str = "gelu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if stack < 1:
            raise ValueError(f"stack must be >= 1, got {stack}")
        hidden_size = hidden_size or output_size
        act = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU}[activation]
        self.stack = stack
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(input_size * stack, hidden_size),
            act(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden_size, output_size),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D)``, ``(B,)`` -> ``(B, T // k, out)``, ``lengths // k``."""
        B, T, D = x.shape
        n = T // self.stack
        x = x[:, : n * self.stack].reshape(B, n, self.stack * D)
        out = self.mlp(x.to(self.mlp[0].weight.dtype))
        return out, torch.div(lengths, self.stack, rounding_mode="floor")
