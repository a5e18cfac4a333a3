#!/usr/bin/env python3
"""Mini recipe, stage 5: build the tiny models the mini configs point to (offline).

- ``<out_dir>/llm``: a tiny random causal LM (Qwen2 architecture) whose byte-level BPE
  tokenizer is trained on the mini training transcripts and the prompt words: in the
  mini recipe too the tokenizer is "the LLM's own";
- ``<out_dir>/whisper``: a tiny random Whisper encoder and its feature extractor.

Both are saved with ``save_pretrained`` and loaded by path through the same
``from_pretrained`` code as the real models (espnet_otreg.slm.tiny). Deterministic
(fixed seeds); an existing complete model directory is kept.
"""

import argparse
from pathlib import Path

from espnet_otreg.data.datadir import read_kv
from espnet_otreg.data.fleurs import LANGUAGE_NAMES
from espnet_otreg.slm.prompt import DEFAULT_TEMPLATE
from espnet_otreg.slm.tiny import build_tiny_llm, build_tiny_whisper


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--text", type=Path, required=True, help="training transcripts (<utt> <text>)")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--llm_hidden", type=int, default=64)
    p.add_argument("--whisper_dim", type=int, default=64)
    a = p.parse_args(argv)
    texts = list(read_kv(a.text).values())
    prompts = [DEFAULT_TEMPLATE.format(lang=name, speech="") for name in LANGUAGE_NAMES.values()]
    llm, whisper = a.out_dir / "llm", a.out_dir / "whisper"
    if not (llm / "config.json").is_file():
        build_tiny_llm(llm, texts + prompts, vocab_size=400, hidden_size=a.llm_hidden, num_layers=2)
    if not (whisper / "config.json").is_file():
        build_tiny_whisper(whisper, d_model=a.whisper_dim, num_layers=2)
    print(f"tiny LLM: {llm}, tiny Whisper: {whisper}")


if __name__ == "__main__":
    main()
