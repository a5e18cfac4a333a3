"""Loading the LLM once: frozen, bf16 where supported, optional LoRA and checkpointing.

Unlike ESPnet's ``hugging_face_transformers`` decoder we keep no second copy of the
weights (no deepcopy of the state dict); the model is loaded by name or path at build
time, so checkpoints need not carry its frozen weights.
"""

import logging
from typing import Dict, Optional

import torch

from espnet_otreg.slm.hf import enable_checkpointing, weight_dtype


def load_llm(
    model_name_or_path: str,
    dtype: str = "auto",
    freeze: bool = True,
    lora: Optional[Dict] = None,
    gradient_checkpointing: bool = False,
    attn_implementation: Optional[str] = None,
    config: Optional[Dict] = None,
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
        config: Hugging Face config keywords (with ``model_type``, e.g. ``qwen2``) to
            build a randomly initialised LM of that shape instead of loading
            ``model_name_or_path`` (benchmarks at real sizes, no download).
        revision: the Hub commit (or tag/branch) to load: pins the weights and the
            tokenizer (the recipes' configs give commit hashes). None: the default branch.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {"dtype": weight_dtype(dtype, freeze)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if config is not None:
        conf = dict(config)
        llm = AutoModelForCausalLM.from_config(
            AutoConfig.for_model(conf.pop("model_type"), **conf), **kwargs
        )
    else:
        llm = AutoModelForCausalLM.from_pretrained(model_name_or_path, revision=revision, **kwargs)
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
