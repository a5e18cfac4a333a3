"""Loading the LLM once: frozen, bf16 where supported, optional LoRA and checkpointing.

Unlike ESPnet's ``hugging_face_transformers`` decoder we keep no second copy of the
weights (no deepcopy of the state dict); the model is loaded by name or path at build
time, so checkpoints need not carry its frozen weights.
"""

import logging
from typing import Dict, List, Optional

import torch

from espnet_otreg.slm.encoder import resolve_dtype


def load_llm(
    model_name_or_path: str,
    dtype: str = "auto",
    freeze: bool = True,
    lora: Optional[Dict] = None,
    gradient_checkpointing: bool = False,
    attn_implementation: Optional[str] = None,
    revision: Optional[str] = None,
) -> torch.nn.Module:
    """Load a Hugging Face causal LM.

    Args:
        model_name_or_path: hub name (e.g. ``Qwen/Qwen2.5-1.5B-Instruct``) or local dir.
        dtype: ``auto`` (bfloat16 on a bf16-capable GPU, else float32), ``bfloat16``,
            ``float16`` or ``float32``. A trainable (not frozen, no LoRA) LLM with
            ``auto`` stays float32 (use ``--use_amp``).
        freeze: fix all base weights.
        lora: None, or peft ``LoraConfig`` keywords (``r``, ``lora_alpha``,
            ``lora_dropout``, ``target_modules``, ...); adds trainable adapters.
        gradient_checkpointing: recompute LLM activations in backward.
        revision: the Hub commit (or tag/branch) to load: pins the weights and the
            tokenizer (the recipes' configs give commit hashes). None: the default branch.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype) if (freeze or dtype != "auto") else torch.float32
    kwargs = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if revision:
        kwargs["revision"] = revision
    llm = AutoModelForCausalLM.from_pretrained(model_name_or_path, **kwargs)
    if freeze:
        llm.requires_grad_(False)
    if gradient_checkpointing:
        enable_checkpointing(llm)
        llm.config.use_cache = False
    if lora:
        llm = add_lora(llm, lora)
    return llm


def add_lora(llm: torch.nn.Module, lora: Dict) -> torch.nn.Module:
    """Wrap ``llm`` with peft LoRA adapters (only the adapters are trainable)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("LoRA needs peft: pip install 'espnet-otreg[lora]'") from e
    conf = dict(lora)
    conf.setdefault("r", 8)
    conf.setdefault("lora_alpha", 16)
    conf.setdefault("lora_dropout", 0.05)
    conf.setdefault("target_modules", ["q_proj", "k_proj", "v_proj", "o_proj"])
    conf["task_type"] = "CAUSAL_LM"
    model = get_peft_model(llm, LoraConfig(**conf))
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logging.info(f"LoRA adapters: {n} trainable parameters")
    return model


def context_length(llm: torch.nn.Module) -> int:
    """The LLM's maximum number of positions (prompt + speech + transcript)."""
    cfg = llm.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def trainable_names(module: torch.nn.Module) -> List[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad]


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing (transformers 5 name, 4.x fallback)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
