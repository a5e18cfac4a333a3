"""Hugging Face helpers shared by the speech encoder and the LLM loader.

Kept apart from :mod:`espnet_otreg.slm.encoder` and :mod:`espnet_otreg.slm.llm` so that
neither imports the other.
"""

import torch


def resolve_dtype(dtype: str) -> torch.dtype:
    """``"auto"``: bfloat16 when a CUDA device supports it, else float32."""
    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            dtype
        ]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")


def weight_dtype(dtype: str, freeze: bool) -> torch.dtype:
    """Load dtype of pretrained weights: ``auto`` halves only frozen weights.

    A trainable module with ``auto`` stays float32 (mixed precision is ``--use_amp``'s
    job); an explicit dtype is taken as given.
    """
    return resolve_dtype(dtype) if (freeze or dtype != "auto") else torch.float32


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing (transformers 5 name, 4.x fallback)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def context_length(model: torch.nn.Module) -> int:
    """The model's maximum number of positions (for an LLM: prompt + speech + transcript)."""
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30
