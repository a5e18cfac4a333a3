"""The frozen teacher: token features ``Z_L`` of a pretrained BERT-style model.

GM-OT distils a pretrained language model (the paper: a Chinese BERT, dim 768) into the
acoustic encoder. The teacher sees the transcript only, never the audio, so its
features can be computed once per transcript and cached (``python -m
espnet_otreg.bin.dump_teacher``, recipe stage 6) or on the fly during training.

Each transcript gives one feature vector per teacher token, taken from the hidden
states of layer ``layer`` (``0`` = embeddings, ``-1`` = last layer, as in
``output_hidden_states``). Special tokens ([CLS], [SEP], padding) are removed: the
linguistic graph has one node per real token. The paper does not say which layer it
uses; the last layer is our default.

:class:`Teacher` is deliberately not an ``nn.Module`` attribute of the ASR model: it
is never in the optimizer, in ``state_dict`` or in a packed model.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import torch

from espnet_otreg.ot import lengths_to_mask


class Teacher:
    """A frozen Hugging Face encoder (``AutoModel``) in eval mode.

    Args:
        name_or_path: a model name on the Hub (e.g. ``bert-base-chinese``) or a local
            directory written by ``save_pretrained``.
        layer: which hidden state to use (``0`` embeddings ... ``-1`` last layer).
        device: where to run it.
        max_length: longest input in tokens (default: the model's position limit).
            Longer transcripts are truncated; :meth:`__call__` reports how many were.
    """

    def __init__(
        self,
        name_or_path: str,
        layer: int = -1,
        device: str | torch.device = "cpu",
        max_length: Optional[int] = None,
    ):
        from transformers import AutoModel, AutoTokenizer

        self.name_or_path = name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.model = AutoModel.from_pretrained(name_or_path)
        self.model.eval().requires_grad_(False)
        n_states = self.model.config.num_hidden_layers + 1
        if not -n_states <= layer < n_states:
            raise ValueError(
                f"teacher_layer={layer} is out of range for {name_or_path!r}, "
                f"which has {n_states} hidden states (0 = embeddings .. {n_states - 1})"
            )
        self.layer = layer
        self.dim = int(self.model.config.hidden_size)
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        self.max_length = int(max_length or limit)
        self.device = torch.device("cpu")
        self.to(device)

    def to(self, device: str | torch.device) -> "Teacher":
        device = torch.device(device)
        if device != self.device:
            self.model.to(device)
            self.device = device
        return self

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
        """Token features of a batch of transcripts.

        Returns:
            ``feats`` (B, M, D) float32, zero-padded; ``lengths`` (B,) the number of real
            tokens per transcript (0 for an empty one); the batch indices of the
            transcripts that were truncated to ``max_length``.
        """
        enc = self.tokenizer(
            list(texts),
            padding=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        # Truncate by hand rather than in the tokenizer, to know which ones were cut.
        truncated = torch.nonzero(enc["attention_mask"].sum(1) > self.max_length)
        truncated = truncated.flatten().tolist()
        if truncated:
            logging.warning(
                "teacher: %d transcript(s) longer than %d tokens were truncated",
                len(truncated), self.max_length,
            )
        enc = {k: v[:, : self.max_length] for k, v in enc.items()}
        special = enc.pop("special_tokens_mask").bool()
        enc = {k: v.to(self.device) for k, v in enc.items()}
        out = self.model(**enc, output_hidden_states=True)
        hidden = out.hidden_states[self.layer].float()
        keep = enc["attention_mask"].bool() & ~special.to(self.device)
        return (*pack_left(hidden, keep), truncated)


def pack_left(x: torch.Tensor, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Move the kept positions of each row to the front, in order; zero the rest.

    ``x`` (B, L, D), ``keep`` (B, L) bool -> (B, max kept, D) and the kept counts (B,).
    """
    lengths = keep.sum(1)
    # A stable sort on "not kept" puts kept positions first, in their original order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    m = int(lengths.max()) if keep.numel() else 0
    order = order[:, :m]
    out = torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[-1]))
    return out * lengths_to_mask(lengths, m)[..., None], lengths
