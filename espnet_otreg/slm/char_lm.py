"""A character-level tokenizer and a small causal LM of the Qwen2 family, built from
scratch: the language model of a speech-LLM experiment that must run without a Hub
download (``local/pretrain_llm.py`` of the FLEURS recipe pre-trains it on text).

Both save with ``save_pretrained`` and load through the ``from_pretrained`` code users
run on real LLMs (``llm_conf.model_name_or_path: <dir>``). The pad token is a token of
its own, not eos: the OTReg blank anchor and the "base + CTC" blank are the pad
token's embedding (``espnet_otreg.slm.espnet_model``), so pad = eos would tie the
blank to the end of every transcript.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Union

import torch

EOS, PAD = "<|endoftext|>", "<|pad|>"
SPECIAL_TOKENS = (EOS, PAD)


def _byte_symbols() -> dict:
    """Byte-level BPE's reversible map from the 256 bytes to printable characters."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def build_char_tokenizer(chars: Iterable[str], model_max_length: int = 512,
                         out_dir: Optional[Union[str, Path]] = None):
    """A Qwen2 tokenizer (byte-level BPE, Qwen2's pre-tokenizer) whose merges make every
    character of ``chars`` one token and nothing longer: a character-level tokenizer
    for Chinese that loads as Qwen2's own class. A character it has not seen becomes
    two or three tokens (its UTF-8 bytes, or a merged prefix of another character and
    the rest): no unknown token, but no single token either. Ids: :data:`SPECIAL_TOKENS` first (eos 0,
    pad 1, a pad of its own), the 256 bytes, then the merges' tokens. Saved to
    ``out_dir`` if given.

    A word-level tokenizer would be simpler, but ``AutoTokenizer`` (transformers 5)
    loads a directory whose ``config.json`` says ``qwen2`` with Qwen2's tokenizer class
    and pre-tokenizer whatever ``tokenizer_config.json`` names, so the vocabulary has to
    be one that class reads.
    """
    from transformers import Qwen2Tokenizer

    byte = _byte_symbols()
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for b in range(256):
        vocab[byte[b]] = len(vocab)
    merges = []
    chars = sorted(set("".join(chars)))
    # Rank by prefix length: every 2-byte prefix merge before any 3-byte one, so that
    # within a character the bytes merge left to right. A merge's left part starts with
    # a UTF-8 lead byte, so no merge joins the bytes of two characters.
    by_len = {}
    for c in chars:
        sym = [byte[b] for b in c.encode("utf-8")]
        for k in range(2, len(sym) + 1):
            by_len.setdefault(k, {})[("".join(sym[: k - 1]), sym[k - 1])] = None
    for k in sorted(by_len):
        for left, right in by_len[k]:
            if left + right not in vocab:
                merges.append((left, right))
                vocab[left + right] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token=EOS, pad_token=PAD,
                         unk_token=None)
    tok.model_max_length = model_max_length
    if out_dir is not None:
        tok.save_pretrained(out_dir)
    return tok


def build_causal_lm(tokenizer, hidden_size: int = 256, num_layers: int = 4,
                    num_heads: int = 4, num_kv_heads: int = 2,
                    max_position_embeddings: int = 512, seed: int = 0,
                    intermediate_size: Optional[int] = None):
    """A randomly initialised ``Qwen2ForCausalLM`` over ``tokenizer``'s vocabulary
    (tied input/output embeddings, MLP width ``intermediate_size``, default 4 x
    hidden), its eos and pad ids taken from the tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
