"""Measurements of transport plans: how sharp, how monotonic, how well placed.

One implementation of each, called by the training stats (GM-OT's ``coupling_*``,
OTReg's ``ot_entropy``), the modality-gap report and the coupling diagnostics of the
experiments (``egs2/aishell_gmot/asr1/local/coupling_diagnostics.py``). Plans are
batched ``(B, N, M)`` (rows: frames, columns: tokens) and zero on padding.

- :func:`plan_entropy`: ``H(P / sum P)`` in nats (0: one cell; ``log(N M)``: uniform).
- :func:`tokens_per_frame`: ``exp(H(P) - H(a))``, the effective number of columns per
  row (1: each frame on one token; M: spread evenly).
- :func:`monotonic_steps`: consecutive rows whose argmax column does not go back.
- :func:`on_target_mass`: the share of the mass inside reference segments, and
  :func:`ctc_segment_starts`, the reference of the experiments: where a CTC model's
  forced alignment first emits each token.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch


def _normalised(plan: torch.Tensor) -> torch.Tensor:
    return plan / plan.sum((-2, -1), keepdim=True).clamp_min(1e-30)


def _entropy(p: torch.Tensor, dims) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dims)


def plan_entropy(plan: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each plan as a distribution, ``(B,)`` (of ``(B, N, M)``)."""
    return _entropy(_normalised(plan), (-2, -1))


def tokens_per_frame(plan: torch.Tensor) -> torch.Tensor:
    """``exp(H(P) - H(a))`` with ``a`` the row marginal: ``exp`` of the conditional
    entropy of the column given the row, ``(B,)``."""
    p = _normalised(plan)
    return torch.exp(_entropy(p, (-2, -1)) - _entropy(p.sum(-1), -1))


def monotonic_steps(plan: torch.Tensor, row_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ok, steps)``, each ``(B,)``: of the ``steps`` pairs of consecutive real rows,
    how many have an argmax column that does not go back (``ok / steps`` = 1: a
    monotonic alignment). Counts, so a caller can pool them over a batch."""
    best = plan.argmax(-1)  # (B, N)
    real = row_mask[:, 1:]
    ok = ((best[:, 1:] >= best[:, :-1]) & real).sum(-1)
    return ok, real.sum(-1)


def on_target_mass(plan: torch.Tensor, starts: torch.Tensor, slack: int = 1) -> torch.Tensor:
    """The share of one ``(N, M)`` plan's mass inside the reference segments: token
    ``j`` holds the rows from ``starts[j]`` up to ``starts[j + 1]`` (the last one to
    ``N``), widened by ``slack`` rows on each side."""
    n = plan.shape[0]
    ends = torch.cat([starts[1:], starts.new_tensor([n])])
    rows = torch.arange(n, device=plan.device)[:, None]
    inside = (rows >= starts[None] - slack) & (rows < ends[None] + slack)
    return (_normalised(plan) * inside).sum()


def ctc_segment_starts(log_probs: torch.Tensor, labels: Sequence[int], blank: int = 0) -> torch.Tensor:
    """Frame of the first emission of each label on the best CTC path (Viterbi,
    ``torchaudio.functional.forced_align``): token ``j``'s segment starts there.

    ``log_probs``: ``(T, V)`` frame log-posteriors; ``labels``: L token ids (no blank).
    Returns L frame indices, non-decreasing. Needs ``T >= L + repeats``.
    """
    import torchaudio.functional as taf

    labels = list(labels)
    repeats = sum(a == b for a, b in zip(labels, labels[1:]))
    if log_probs.shape[0] < len(labels) + repeats:
        raise ValueError(f"{log_probs.shape[0]} frames cannot hold {len(labels)} labels "
                         "with their repeats")
    if not labels:
        return torch.zeros(0, dtype=torch.long)
    path, scores = taf.forced_align(
        torch.as_tensor(log_probs, dtype=torch.float32)[None],
        torch.tensor([labels], dtype=torch.int32), blank=blank)
    spans = taf.merge_tokens(path[0], scores[0].exp(), blank=blank)
    return torch.tensor([span.start for span in spans], dtype=torch.long)
