"""Tiny, random, offline models for tests and the mini recipe (no Hub download).

:func:`build_tiny_bert` writes a BERT-style teacher with ``save_pretrained``, so it is
loaded through the same ``from_pretrained`` code as ``bert-base-chinese``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_bert(
    out_dir: str | Path,
    texts: Iterable[str],
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    seed: int = 0,
) -> Path:
    """A random BERT whose vocabulary is the characters of ``texts``.

    Deterministic for a given ``seed`` and character set. Returns ``out_dir``.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for t in texts for c in t if not c.isspace()})
    (out / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + chars) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(out / "vocab.txt"), do_lower_case=False)
    cfg = BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(chars),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
