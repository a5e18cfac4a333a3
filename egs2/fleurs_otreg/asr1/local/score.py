#!/usr/bin/env python3
"""Stage 13: WER per language (CER for languages written without spaces).

Reads the references (``<data dir>/text``, raw transcripts), the languages
(``<data dir>/utt2lang``) and the hypotheses (``--hyp``, ``<utt> <text>``); both sides
go through the Whisper-style normaliser of espnet_otreg.data.text_norm and are scored
with jiwer. Writes to --out_dir:

- ``scores.json``: per language {metric, rate, S, D, I, n_ref, n_utt, n_empty_hyp},
  ``avg`` (mean of the per-language rates, how multilingual FLEURS results are usually
  averaged) and ``all`` (pooled counts: every word weighs the same);
- ``result.md``: the same as a table;
- ``per_utt.txt``: normalised reference and hypothesis of each utterance with its
  error count, for reading the errors.

``--english_normalizer whisper``: English (``en_*``) is first normalised with Whisper's
``EnglishTextNormalizer`` (from transformers: contractions, numbers, British/American
spellings when ``--english_spelling`` gives Whisper's ``english.json``/``normalizer.json``
mapping), as the Whisper and OWSM English results are; other languages are unchanged.

Every reference needs a hypothesis line (an empty hypothesis is allowed and counts as
deletions); a missing one stops with the utterance ids: decoding is incomplete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from espnet_otreg.data.datadir import read_kv
from espnet_otreg.data.text_norm import ErrorCounts, error_counts, normalize, uses_cer


def english_normalizer(spelling_json: Path | None = None):
    """Whisper's EnglishTextNormalizer (transformers), with the spelling mapping if given."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    mapping = json.loads(spelling_json.read_text(encoding="utf-8")) if spelling_json else {}
    return EnglishTextNormalizer(mapping)


def score(data_dir: Path, hyp_file: Path, out_dir: Path, keep_marks: bool = True,
          english=None) -> dict:
    ref = read_kv(data_dir / "text")
    lang = read_kv(data_dir / "utt2lang")
    hyp = read_kv(hyp_file, allow_empty_value=True)
    if english is not None:  # Whisper's English normaliser first, for en_* only
        ref = {u: english(t) if lang.get(u, "").startswith("en") else t for u, t in ref.items()}
        hyp = {u: english(t) if lang.get(u, "").startswith("en") else t for u, t in hyp.items()}
    missing = [u for u in ref if u not in hyp]
    if missing:
        raise SystemExit(f"score.py: error: {hyp_file} has no hypothesis for {len(missing)} of "
                         f"{len(ref)} utterances of {data_dir}, e.g. {missing[:5]}; rerun decoding")
    by_lang: dict[str, list[str]] = {}
    for u in ref:
        by_lang.setdefault(lang[u], []).append(u)
    out: dict = {"langs": {}}
    pooled = ErrorCounts()
    lines = []
    for lg in sorted(by_lang):
        utts = by_lang[lg]
        c = error_counts([ref[u] for u in utts], [hyp[u] for u in utts], lg, keep_marks)
        pooled.add(c)
        out["langs"][lg] = dict(metric="cer" if uses_cer(lg) else "wer", rate=round(c.rate, 2),
                                S=c.substitutions, D=c.deletions, I=c.insertions, n_ref=c.n_ref,
                                n_utt=c.n_utt, n_empty_hyp=c.n_empty_hyp)
        for u in utts:
            e = error_counts([ref[u]], [hyp[u]], lg, keep_marks)
            lines.append(f"{u}\t{lg}\terr={e.errors}/{e.n_ref}\n  REF: {normalize(ref[u], keep_marks)}"
                         f"\n  HYP: {normalize(hyp[u], keep_marks)}\n")
    rates = [v["rate"] for v in out["langs"].values()]
    out["avg"] = round(sum(rates) / len(rates), 2)
    out["all"] = dict(rate=round(pooled.rate, 2), n_ref=pooled.n_ref, n_utt=pooled.n_utt)
    out["data_dir"], out["hyp"] = str(data_dir), str(hyp_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scores.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    (out_dir / "per_utt.txt").write_text("".join(lines), encoding="utf-8")
    md = ["| lang | metric | rate (%) | S | D | I | ref units | utts |", "|---|---|---|---|---|---|---|---|"]
    for lg, v in out["langs"].items():
        md.append(f"| {lg} | {v['metric'].upper()} | {v['rate']:.2f} | {v['S']} | {v['D']} | {v['I']} | {v['n_ref']} | {v['n_utt']} |")
    md.append(f"| **avg** (mean over languages) | | **{out['avg']:.2f}** | | | | | |")
    md.append(f"| all (pooled) | | {out['all']['rate']:.2f} | | | | {pooled.n_ref} | {pooled.n_utt} |")
    (out_dir / "result.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--hyp", type=Path, required=True)
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--whisper_exact", action="store_true",
                   help="Whisper's normaliser exactly (also replaces combining marks by spaces)")
    p.add_argument("--english_normalizer", choices=["basic", "whisper"], default="basic",
                   help="whisper: Whisper's EnglishTextNormalizer for en_* first")
    p.add_argument("--english_spelling", type=Path, default=None,
                   help="Whisper's British->American spelling json (english.json)")
    a = p.parse_args(argv)
    eng = english_normalizer(a.english_spelling) if a.english_normalizer == "whisper" else None
    try:
        out = score(a.data_dir, a.hyp, a.out_dir, keep_marks=not a.whisper_exact, english=eng)
    except ValueError as e:
        sys.exit(f"score.py: error: {e}")
    print((a.out_dir / "result.md").read_text(), end="")
    print(f"avg {out['avg']:.2f}  ({a.out_dir / 'scores.json'})")


if __name__ == "__main__":
    main()
