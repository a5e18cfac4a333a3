"""Tiny random speech-LLM parts for tests and mini recipes (offline, deterministic).

Both builders write Hugging Face directories that load through the same
``from_pretrained`` code users run on real checkpoints:

- :func:`build_tiny_llm`: a byte-level BPE tokenizer trained on ``texts`` (wrapped in
  ``PreTrainedTokenizerFast``) and a tiny random ``Qwen2ForCausalLM`` over its vocabulary.
- :func:`build_tiny_whisper`: a tiny random ``WhisperModel`` (its encoder is what we use)
  and a ``WhisperFeatureExtractor``.

The weights are random (fixed seed): they exercise the code paths, they do not
recognise speech.
"""

from pathlib import Path
from typing import Iterable, Union

import torch

EOS = "<|endoftext|>"
SPECIAL_TOKENS = [EOS, "<|im_start|>", "<|im_end|>"]


def build_tiny_llm(
    out_dir: Union[str, Path],
    texts: Iterable[str],
    vocab_size: int = 400,
    hidden_size: int = 32,
    num_layers: int = 2,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Train a tiny tokenizer on ``texts`` and save it with a random tiny Qwen2 LM.

    Args:
        out_dir: directory to write (created); load it with
            ``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained``.
        texts: sentences to learn the BPE merges from (transcripts and prompt words).
        vocab_size: BPE vocabulary size at most (256 byte symbols + merges + specials).
        max_position_embeddings: the LM's context length (small values let tests hit
            the "prompt too long" path).

    Returns:
        ``out_dir`` as a Path.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from espnet_otreg.slm.char_lm import build_causal_lm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sorted(set(texts)), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token=None
    )
    fast.model_max_length = max_position_embeddings
    fast.save_pretrained(out_dir)

    model = build_causal_lm(fast, hidden_size, num_layers, num_heads=4, num_kv_heads=2,
                            max_position_embeddings=max_position_embeddings, seed=seed,
                            intermediate_size=2 * hidden_size)
    model.save_pretrained(out_dir)
    return out_dir


def build_tiny_whisper(
    out_dir: Union[str, Path],
    d_model: int = 32,
    num_layers: int = 2,
    num_mel_bins: int = 80,
    max_source_positions: int = 1500,
    seed: int = 0,
) -> Path:
    """Save a tiny random ``WhisperModel`` and its ``WhisperFeatureExtractor``.

    ``max_source_positions`` (encoder frames after the stride-2 conv, 50 per second)
    limits the audio length to ``max_source_positions / 50`` seconds.
    """
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=num_mel_bins,
        d_model=d_model,
        encoder_layers=num_layers,
        encoder_attention_heads=4,
        encoder_ffn_dim=2 * d_model,
        decoder_layers=1,
        decoder_attention_heads=4,
        decoder_ffn_dim=2 * d_model,
        max_source_positions=max_source_positions,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperModel(config)
    model.save_pretrained(out_dir)
    WhisperFeatureExtractor(
        feature_size=num_mel_bins, chunk_length=max_source_positions * 2 // 100
    ).save_pretrained(out_dir)
    return out_dir
