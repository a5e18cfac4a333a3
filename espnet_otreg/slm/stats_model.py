"""The model ESPnet's ``--collect_stats true`` stage gets from ``SLMTask``."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from espnet2.train.abs_espnet_model import AbsESPnetModel


def frontend_feats(frontend: Optional[torch.nn.Module], speech: torch.Tensor,
                   speech_lengths: torch.Tensor) -> Dict[str, torch.Tensor]:
    """``collect_feats``: the frontend's features, or the input itself without one."""
    if frontend is not None:
        speech, speech_lengths = frontend(speech, speech_lengths)
    return {"feats": speech, "feats_lengths": speech_lengths}


class SLMStatsModel(AbsESPnetModel):
    """What ``--collect_stats`` needs: the frontend's features, nothing else.

    ESPnet's collect-stats stage builds the model only to call ``collect_feats`` (shape
    files and feature statistics for ``normalize: global_mvn``). Loading a multi-GB
    LLM and Whisper encoder on every CPU job for that would be waste, so ``SLMTask``
    builds this instead when ``--collect_stats true``.
    """

    def __init__(self, frontend: Optional[torch.nn.Module] = None):
        super().__init__()
        self.frontend = frontend
        # ESPnet builds the optimizer (and a model summary that divides by the number
        # of parameters) before it branches to collect stats: one unused scalar.
        self.placeholder = torch.nn.Parameter(torch.zeros(1))

    def forward(self, *args, **kwargs):
        raise RuntimeError("SLMStatsModel only collects statistics (--collect_stats true)")

    def collect_feats(self, speech, speech_lengths, **kwargs) -> Dict[str, torch.Tensor]:
        return frontend_feats(self.frontend, speech, speech_lengths)
