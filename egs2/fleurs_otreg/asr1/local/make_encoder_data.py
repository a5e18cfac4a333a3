#!/usr/bin/env python3
"""Data dirs for pre-training the OTReg experiment's speech encoder by CTC (with the
AISHELL recipe, which reads characters): the corpus of ``local/make_otreg_corpus.py``
with its transcripts as characters or as toneless syllables.

A real speech-LLM's encoder was not trained to spell the LLM's tokens. With
``--target syllable`` the CTC target is the toneless pinyin syllable of each character
(``espnet_otreg.data.pinyin``), so homophones share a target and
the LLM has to tell them apart from context; with ``--target char`` it is the
transcript. The syllable inventory is small (a few hundred) and every one of them is
heard in training, so an encoder can output syllables of sentences from another text
domain that it could not spell.

Each syllable is written as one symbol, so that the AISHELL recipe's character tokens
and CER (then a syllable error rate) work unchanged: the character that the training
transcripts read most often with that syllable (ties: the lowest code point); a
syllable never heard in training is written as the first character (in set order)
read so. ``syllables.json`` has the map and the counts.

::

    python local/make_encoder_data.py --data otreg/corpus/data --out otreg/encoder_syllable --target syllable
    (cd ../../aishell_gmot/asr1 && ./run.sh --stage 2 --datadir $PWD/otreg/encoder_syllable/data ...)

Written: ``<out>/data/<set>/{wav.scp,text,utt2spk,spk2utt}`` for every set of ``--data``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_otreg.data.datadir import read_kv
from espnet_otreg.data.pinyin import syllables

FILES = ("wav.scp", "utt2spk", "spk2utt")


def syllable_symbols(sets: Dict[str, List[Tuple[str, str]]], train: str = "train"
                     ) -> Tuple[Dict[str, str], Counter]:
    """One character per syllable: the one training reads most often with it."""
    reads: Dict[str, Counter] = {}
    heard: Counter = Counter()
    for utt, text in sets[train]:
        for c, s in zip(text, syllables(text, utt)):
            reads.setdefault(s, Counter())[c] += 1
            heard[s] += 1
    symbol = {s: min(cs.items(), key=lambda kv: (-kv[1], kv[0]))[0] for s, cs in reads.items()}
    for name in sorted(sets):
        for utt, text in sets[name]:
            for c, s in zip(text, syllables(text, utt)):
                symbol.setdefault(s, c)
    if len(set(symbol.values())) != len(symbol):  # a character read two ways
        used: Dict[str, str] = {}
        for s in sorted(symbol, key=lambda s: (-heard[s], s)):
            c = symbol[s]
            if c in used:  # a later syllable takes a private-use character of its own
                c = chr(0xE000 + len(used))
            used[c] = s
            symbol[s] = c
    return symbol, heard


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="make_otreg_corpus.py's <out>/data")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--target", choices=("char", "syllable"), required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    names = sorted(d.name for d in args.data.iterdir() if (d / "text").is_file())
    if "train" not in names:
        raise SystemExit(f"make_encoder_data.py: {args.data} has no train/text")
    sets = {n: list(read_kv(args.data / n / "text").items()) for n in names}
    symbol = None
    if args.target == "syllable":
        symbol, heard = syllable_symbols(sets)
        info = dict(syllables=len(symbol), heard_in_train=len(heard),
                    symbol=dict(sorted(symbol.items())), train_count=dict(heard.most_common()))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "syllables.json").write_text(
            json.dumps(info, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        logging.info(f"{len(symbol)} syllables ({len(heard)} heard in training)")
    for name, rows in sets.items():
        d = args.out / "data" / name
        d.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            shutil.copyfile(args.data / name / f, d / f)
        lines = []
        for utt, text in rows:
            if symbol is not None:
                text = "".join(symbol[s] for s in syllables(text, utt))
            lines.append(f"{utt} {text}\n")
        (d / "text").write_text("".join(lines), encoding="utf-8")
    logging.info(f"{args.out}/data: {', '.join(f'{n} ({len(r)})' for n, r in sets.items())}")


if __name__ == "__main__":
    main()
