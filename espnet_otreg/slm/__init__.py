"""OTReg speech-LLM (arXiv 2508.08131) as an ESPnet model.

- :mod:`.espnet_model`: :class:`ESPnetSLMModel` (encoder -> projector -> frozen LLM;
  CE + OTReg / CTC; two-phase schedule; batched decoding).
- :mod:`.otreg`: the OT regulariser. :mod:`.projector`, :mod:`.encoder` (HF Whisper),
  :mod:`.llm` (loading, LoRA), :mod:`.hf` (dtype, checkpointing and context helpers
  both use), :mod:`.prompt` (template, preprocessor).
- :mod:`.tiny`: tiny random models for tests and mini recipes.

Submodules import ESPnet and transformers; this package file imports nothing.
"""
