"""The LLM input of a batch, as pure functions over lengths.

Each utterance's sequence is four segments, left-padded to the batch's longest::

    [prompt_pre] [speech] [prompt_post] [text eos]      (text eos: training only)

:func:`plan_layout` places them from the lengths alone; :func:`token_ids` and
:func:`speech_rows` fill the token and speech positions; :func:`length_check` says which
utterances fit at all. No Python loop over the batch; nothing here touches a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch


#: Why an utterance is left out of a training step, a decode or a measurement; the
#: keys are the stats that count them.
SKIP_REASONS = {
    "skip_empty": "empty transcript",
    "skip_short": "audio shorter than one projector step",
    "skip_long": "longer than the LLM context",
}


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, l]]`` for token ids ``x (B, T)``, out-of-range indices clamped
    (callers mask those positions); padding ids (< 0) come back as 0."""
    if x.size(1) == 0:
        return torch.zeros_like(index)
    return torch.gather(x, 1, index.clamp(0, x.size(1) - 1)).clamp_min(0)


@dataclass(frozen=True)
class Layout:
    """Where each segment lies in every row of a left-padded batch.

    ``position (B, L)`` is the index within the utterance's own sequence (negative on
    its left padding); a segment is the positions in ``[start, end)`` of its row, with
    ``pre_end <= speech_end <= post_end <= end`` per utterance ``(B,)``.
    """

    position: torch.Tensor
    pre_end: torch.Tensor
    speech_end: torch.Tensor
    post_end: torch.Tensor
    end: torch.Tensor
    has_text: bool = True  # False: a decoding prompt (no transcript, no eos)

    def _between(self, start: Optional[torch.Tensor], end: torch.Tensor) -> torch.Tensor:
        low = self.position >= 0 if start is None else self.position >= start[:, None]
        return low & (self.position < end[:, None])

    @property
    def real(self) -> torch.Tensor:
        """``(B, L)`` True off the left padding (the attention mask)."""
        return self.position >= 0

    @property
    def in_prompt_pre(self) -> torch.Tensor:
        return self._between(None, self.pre_end)

    @property
    def in_speech(self) -> torch.Tensor:
        return self._between(self.pre_end, self.speech_end)

    @property
    def in_prompt_post(self) -> torch.Tensor:
        return self._between(self.speech_end, self.post_end)

    @property
    def in_text(self) -> torch.Tensor:
        """The transcript tokens (eos excluded)."""
        if not self.has_text:
            return torch.zeros_like(self.real)
        return self._between(self.post_end, self.end - 1)

    @property
    def is_eos(self) -> torch.Tensor:
        """The eos after the transcript (none in a decoding layout)."""
        if not self.has_text:
            return torch.zeros_like(self.real)
        return self.position == (self.end - 1)[:, None]


def plan_layout(
    pre_lengths: torch.Tensor,
    speech_lengths: torch.Tensor,
    post_lengths: torch.Tensor,
    text_lengths: Optional[torch.Tensor] = None,
) -> Layout:
    """The layout of ``[pre][speech][post]([text][eos])``, right-aligned so that every
    row ends at the last column (``text_lengths`` None: a decoding prompt)."""
    n_text = text_lengths + 1 if text_lengths is not None else torch.zeros_like(speech_lengths)
    ends = torch.stack([pre_lengths, speech_lengths, post_lengths, n_text], 1).cumsum(1)
    pre_end, speech_end, post_end, end = ends.unbind(1)
    width = int(end.max())
    position = torch.arange(width, device=end.device)[None, :] - (width - end)[:, None]
    return Layout(position, pre_end, speech_end, post_end, end, text_lengths is not None)


def token_ids(
    layout: Layout,
    prompt_pre: torch.Tensor,
    prompt_post: torch.Tensor,
    pad_token_id: int,
    eos_token_id: int,
    text: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Token ids ``(B, L)`` on the prompt, transcript and eos positions (``pad_token_id``
    on padding and speech), and the labels: ids on transcript and eos, -100 elsewhere
    (None without ``text``)."""
    pos = layout.position
    ids = torch.full_like(pos, pad_token_id)
    ids = torch.where(layout.in_prompt_pre, gather_rows(prompt_pre, pos), ids)
    ids = torch.where(layout.in_prompt_post,
                      gather_rows(prompt_post, pos - layout.speech_end[:, None]), ids)
    if text is None:
        return ids, None
    in_text, is_eos = layout.in_text, layout.is_eos
    ids = torch.where(in_text, gather_rows(text, pos - layout.post_end[:, None]), ids)
    ids = torch.where(is_eos, torch.full_like(ids, eos_token_id), ids)
    labels = torch.where(in_text | is_eos, ids, torch.full_like(ids, -100))
    return ids, labels


def speech_rows(layout: Layout, z: torch.Tensor) -> torch.Tensor:
    """``(B, L, D)``: at each speech position the speech embedding it holds (``z (B, N,
    D)``), elsewhere some row of ``z`` that the caller masks out with ``in_speech``."""
    index = (layout.position - layout.pre_end[:, None]).clamp(0, max(z.size(1) - 1, 0))
    return torch.gather(z, 1, index[:, :, None].expand(-1, -1, z.size(2)))


def length_check(
    pre_lengths: torch.Tensor,
    speech_lengths: torch.Tensor,
    post_lengths: torch.Tensor,
    text_lengths: Optional[torch.Tensor],
    max_context: int,
    extra_tokens: int = 0,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
    """Which utterances fit: the valid mask ``(B,)``, one mask per :data:`SKIP_REASONS`
    key (each utterance has at most one reason, the first that applies: empty, short,
    long) and the positions each one needs.

    ``text_lengths`` None (decoding): no utterance is empty and none adds a transcript;
    ``extra_tokens`` reserves positions (1 for the first generated token).
    """
    total = pre_lengths + speech_lengths + post_lengths + extra_tokens
    empty = torch.zeros_like(speech_lengths, dtype=torch.bool)
    if text_lengths is not None:
        empty = text_lengths == 0
        total = total + text_lengths + 1  # + eos
    short = speech_lengths == 0
    long = total > max_context
    masks = {"skip_empty": empty, "skip_short": short & ~empty,
             "skip_long": long & ~short & ~empty}
    return ~(empty | short | long), masks, total
