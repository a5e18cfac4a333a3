"""Models and a batch for ``python -m espnet_otreg.bin.bench_step --model slm``.

:func:`build_bench_models` returns the base SLM (``lambda_ot = 0``) and the OTReg SLM
(``lambda_ot = 0.3``, sqeuclidean cost, de-duplicated targets + blank, envelope
gradient), phase 2, both built by ``SLMTask`` from the same config with random weights
(the Whisper encoder and the LLM from Hugging Face configs, no download). The two share
one frozen encoder and LLM (one copy in memory) and have projectors with identical
initial weights, so the step-time difference is the OTReg loss alone (the base model
does not solve OT for its stats here: ``ot_stats: false``).

Presets:

- ``tiny``: CPU-friendly (d=32 Whisper, 2 layers; 2-layer Qwen2, hidden 64), B=4, 1-2 s.
- ``recipe``: Whisper-large-v3 encoder (1280-d, 32 layers, 128 mels, 30 s windows) and a
  Qwen2.5-1.5B-shaped LLM (1536-d, 28 layers, vocab 151936), bf16 where supported,
  B=8 utterances of 8-15 s, transcripts of 30-60 tokens, stack k=5.
"""

from typing import Dict, List, Tuple

import torch

from espnet_otreg.bench import build_from_config
from espnet_otreg.ot import lengths_to_mask
from espnet_otreg.slm.hf import resolve_dtype

PRESETS = {
    "tiny": dict(
        whisper=dict(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                     num_mel_bins=80, max_source_positions=1500, decoder_layers=1,
                     decoder_attention_heads=4, decoder_ffn_dim=64, vocab_size=64,
                     pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1),
        llm=dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048),
        batch=4, seconds=(1.0, 2.0), tokens=(8, 16), stack=4, pad_to_30s=False,
        dtype="float32",
    ),
    "recipe": dict(
        whisper=dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20,
                     encoder_ffn_dim=5120, num_mel_bins=128, max_source_positions=1500,
                     decoder_layers=1, decoder_attention_heads=20, decoder_ffn_dim=64),
        llm=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                 num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 max_position_embeddings=32768, rope_theta=1000000.0,
                 tie_word_embeddings=True),
        batch=8, seconds=(8.0, 15.0), tokens=(30, 60), stack=5, pad_to_30s=True,
        dtype="auto",
    ),
}


def _config(p: dict, lambda_ot: float, dtype: torch.dtype) -> Dict:
    name = {torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(dtype, "float32")
    return dict(
        frontend=None,
        encoder="hf_whisper",
        encoder_conf=dict(config=p["whisper"], dtype=name, pad_to_30s=p["pad_to_30s"]),
        projector_conf=dict(stack=p["stack"]),
        llm_conf=dict(
            config=dict(model_type="qwen2", eos_token_id=1, pad_token_id=0, **p["llm"]),
            dtype=name,
        ),
        model_conf=dict(phase=2, lambda_ot=lambda_ot, ot_stats=False),
    )


def build_bench_models(device: str, preset: str) -> List[Tuple[str, torch.nn.Module, Dict]]:
    """``[("base", model, batch_kwargs), ("otreg", model, batch_kwargs)]``.

    ``model(**batch_kwargs)`` returns ``(loss, stats, weight)``; the trainable parameters
    are those with ``requires_grad`` (the projector).
    """
    from espnet_otreg.tasks.slm import SLMTask

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    dtype = resolve_dtype(p["dtype"]) if device.startswith("cuda") else torch.float32
    gen = torch.Generator().manual_seed(0)
    models = []
    with torch.random.fork_rng(devices=[]), torch.device(device):
        for name, lam in (("base", 0.0), ("otreg", 0.3)):
            torch.manual_seed(0)  # the same projector weights in both
            models.append((name, build_from_config(SLMTask, _config(p, lam, dtype))))
    (_, base), (_, otreg) = models
    base.encoder, base.llm = otreg.encoder, otreg.llm  # one copy of the frozen parts
    for _, model in models:
        model.to(device).train()  # as the trainer does: frozen submodules stay in eval mode

    B = p["batch"]
    V = p["llm"]["vocab_size"]
    lo, hi = p["seconds"]
    n = (16000 * (lo + (hi - lo) * torch.rand(B, generator=gen))).long()
    speech = 0.1 * torch.randn(B, int(n.max()), generator=gen)
    speech = speech * lengths_to_mask(n, speech.size(1))
    t = torch.randint(p["tokens"][0], p["tokens"][1] + 1, (B,), generator=gen)
    text = torch.randint(2, V, (B, int(t.max())), generator=gen).masked_fill(~lengths_to_mask(t), -1)
    batch = dict(
        speech=speech, speech_lengths=n, text=text, text_lengths=t,
        prompt_pre=torch.randint(2, V, (B, 10), generator=gen),
        prompt_pre_lengths=torch.full((B,), 10),
        prompt_post=torch.randint(2, V, (B, 4), generator=gen),
        prompt_post_lengths=torch.full((B,), 4),
    )
    batch = {k: v.to(device) for k, v in batch.items()}
    return [(name, model, batch) for name, model in models]
