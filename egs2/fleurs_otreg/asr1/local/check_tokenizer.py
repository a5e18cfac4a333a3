#!/usr/bin/env python3
"""Stage 5: the tokenizer is the LLM's own; check it against the transcripts.

ESPnet recipes train a BPE model here. A speech-LLM must write the LLM's tokens, so
there is nothing to train: we load the tokenizer named by ``llm_conf.model_name_or_path``
in the config (downloaded from the Hub on first use, or a local directory) and check
every transcript of the given data dirs:

- a transcript that tokenises to no token stops the stage (naming the utterance);
- transcripts that do not decode back to themselves (unknown characters mapped to an
  unk token, or normalised away) are counted per language and listed in
  ``<out>.mismatch.txt``: the model cannot learn to write those characters;
- the token count per language (mean, 95th percentile, max) goes to ``--out``
  (Markdown), for choosing ``max_new_tokens`` and batch sizes.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

from espnet_otreg.data.datadir import read_kv


def tokenizer_name(config: Path) -> str:
    conf = yaml.safe_load(config.read_text()) or {}
    name = (conf.get("llm_conf") or {}).get("model_name_or_path")
    if not name:
        raise SystemExit(f"check_tokenizer.py: error: {config} has no llm_conf.model_name_or_path")
    return name


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--data_dirs", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    from transformers import AutoTokenizer

    name = tokenizer_name(a.config)
    revision = ((yaml.safe_load(a.config.read_text()) or {}).get("llm_conf") or {}).get("revision")
    tok = AutoTokenizer.from_pretrained(name, revision=revision)
    lengths: dict[str, list[int]] = {}
    mismatch, empty = [], []
    for d in a.data_dirs:
        text, lang = read_kv(d / "text"), read_kv(d / "utt2lang")
        for utt, t in text.items():
            ids = tok(t, add_special_tokens=False)["input_ids"]
            if not ids:
                empty.append(f"{d}: {utt}")
                continue
            lengths.setdefault(lang[utt], []).append(len(ids))
            back = tok.decode(ids, skip_special_tokens=False)
            if " ".join(back.split()) != " ".join(t.split()):
                mismatch.append((lang[utt], utt, t, back))
    if empty:
        sys.exit(f"check_tokenizer.py: error: {len(empty)} transcripts tokenise to nothing, e.g. {empty[:5]}")
    lines = [f"# Transcripts in tokens of `{name}` (vocabulary {len(tok)})", "",
             "| lang | utts | mean | p95 | max | not round-trip |", "|---|---|---|---|---|---|"]
    bad = {}
    for lg, _, _, _ in mismatch:
        bad[lg] = bad.get(lg, 0) + 1
    for lg in sorted(lengths):
        x = np.array(lengths[lg])
        lines.append(f"| {lg} | {len(x)} | {x.mean():.1f} | {np.percentile(x, 95):.0f} | {x.max()} | {bad.get(lg, 0)} |")
    a.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mm = a.out.with_suffix(".mismatch.txt")
    if mismatch:
        mm.write_text("".join(f"{u}\t{lg}\tREF: {t}\tDECODED: {b}\n" for lg, u, t, b in mismatch), encoding="utf-8")
        print(f"WARNING: {len(mismatch)} transcripts do not survive tokenise+decode (listed in {mm})")
    elif mm.exists():
        mm.unlink()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
