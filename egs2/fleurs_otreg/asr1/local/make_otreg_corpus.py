#!/usr/bin/env python3
"""Speak the text of ``local/make_otreg_text.py``: the OTReg cross-domain corpus, as
Kaldi data dirs the recipe reads from stage 3 on.

Every sentence set of ``<text>/speech/`` (train, dev, test, test_<domain>) is spoken
by espeak-ng voices (``espnet_otreg.data.synth``): six voices in train, two others in
dev, two more in every test set (voices training never heard). Each test set ``T``
also gets ``T_acoustic``: the same sentences and voices, faster (``--shift_rate``) and
noisier (``--shift_snr``). So each axis of "cross-domain" is measured on its own and
paired by utterance:

    test                  in-domain text, in-domain acoustics
    test_acoustic         in-domain text, shifted acoustics   (same sentences as test)
    test_<domain>         shifted text, in-domain acoustics
    test_<domain>_acoustic  both

::

    python local/make_otreg_corpus.py --text otreg_text --out otreg_corpus
    ./run.sh --stage 3 --datadir otreg_corpus/data --langs cmn_hans_cn \\
        --test_sets "test test_acoustic test_everyday test_everyday_acoustic"

Written: ``<out>/data/<set>/{wav.scp,text,utt2spk,spk2utt,utt2lang}``,
``<out>/wav/<set>/<utt>.wav`` (16 kHz, 16-bit) and ``<out>/corpus.json``. Deterministic
(one seed per utterance); a rerun keeps the WAV files it finds, so a cut run resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import zlib
from multiprocessing import Pool
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from espnet_otreg.data.synth import Voice, utterance
from espnet_otreg.data.text_corpora import read_sentences

LANG = "cmn_hans_cn"  # FLEURS's code for Mandarin: the prompt names the language from it
VOICES = {
    "train": [Voice("m1", 45, 165), Voice("f2", 60, 170), Voice("m3", 35, 150),
              Voice("f4", 70, 180), Voice("m5", 50, 175), Voice("f5", 55, 155)],
    "dev": [Voice("m2", 40, 160), Voice("f3", 65, 172)],
    "test": [Voice("m4", 55, 168), Voice("f1", 62, 158)],
}


def plan(sets: Dict[str, List[str]], args) -> Dict[str, List[Tuple[str, str, Voice, float, int]]]:
    """Per data set, ``(utt_id, text, voice, snr_db, seed)`` of each utterance; voices
    take turns over a set's sentences."""
    out = {}
    for name, sentences in sets.items():
        kind = name if name in ("train", "dev") else "test"
        variants = [("", 1.0, (args.snr_low, args.snr_high))]
        if kind == "test":
            variants.append(("_acoustic", args.shift_rate, tuple(args.shift_snr)))
        for suffix, rate, (lo, hi) in variants:
            rows = []
            for i, text in enumerate(sentences):
                k = i % len(VOICES[kind])
                spk = f"{kind}{k}"
                voice = VOICES[kind][k].faster(rate)
                seed = zlib.crc32(f"{args.seed}/{name}{suffix}/{i}".encode())
                snr = float(np.random.default_rng(seed).uniform(lo, hi))
                rows.append((f"{spk}_{name}{suffix}_{i:05d}", text, voice, snr, seed))
            out[name + suffix] = rows
    return out


def _speak(job) -> str:
    path, text, voice, snr, seed, utt = job
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(utterance(text, voice, snr, seed, name=utt))
    tmp.replace(path)  # a cut run never leaves half a file under the real name
    return utt


def write_sets(planned, out: Path, nj: int) -> None:
    jobs = []
    for name, rows in planned.items():
        (out / "wav" / name).mkdir(parents=True, exist_ok=True)
        for utt, text, voice, snr, seed in rows:
            path = out / "wav" / name / f"{utt}.wav"
            if not path.is_file():
                jobs.append((path, text, voice, snr, seed, utt))
    done = sum(len(r) for r in planned.values()) - len(jobs)
    logging.info(f"{len(jobs)} utterances to synthesise ({done} found)")
    pool = Pool(nj) if nj > 1 else None
    try:
        done_iter = pool.imap_unordered(_speak, jobs, chunksize=8) if pool else map(_speak, jobs)
        for n, _ in enumerate(done_iter, 1):
            if n % 500 == 0 or n == len(jobs):
                logging.info(f"synthesised {n}/{len(jobs)}")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    for name, rows in planned.items():
        d = out / "data" / name
        d.mkdir(parents=True, exist_ok=True)
        rows = sorted(rows)
        files = {
            "wav.scp": [f"{u} {(out / 'wav' / name / f'{u}.wav').resolve()}" for u, *_ in rows],
            "text": [f"{u} {t}" for u, t, *_ in rows],
            "utt2spk": [f"{u} {u.split('_')[0]}" for u, *_ in rows],
            "utt2lang": [f"{u} {LANG}" for u, *_ in rows],
        }
        spk2utt: Dict[str, List[str]] = {}
        for u, *_ in rows:
            spk2utt.setdefault(u.split("_")[0], []).append(u)
        files["spk2utt"] = [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())]
        for fname, lines in files.items():
            (d / fname).write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, required=True, help="make_otreg_text.py's --out")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--snr_low", type=float, default=20.0)
    p.add_argument("--snr_high", type=float, default=30.0)
    # Pilot (2026-12-02, the CTC syllable encoder, 100 test sentences; in-domain 5.6 %
    # syllable errors): rate 1.3 alone 12.4 %, 5-10 dB alone 48.1 %, both 69 %; rate
    # 1.15 with 10-15 dB 21.5 %: clearly worse, far from 100 %.
    p.add_argument("--shift_rate", type=float, default=1.15,
                   help="the acoustic shift: speaking rate x this")
    p.add_argument("--shift_snr", type=float, nargs=2, default=[10.0, 15.0],
                   help="the acoustic shift: SNR range (dB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    speech = args.text / "speech"
    sets = {f.stem: read_sentences(f) for f in sorted(speech.glob("*.txt"))}
    missing = {"train", "dev", "test"} - set(sets)
    if missing:
        raise SystemExit(f"make_otreg_corpus.py: {speech} has no {', '.join(sorted(missing))}"
                         ".txt (run local/make_otreg_text.py first)")
    planned = plan(sets, args)
    write_sets(planned, args.out, args.nj)
    info = dict(
        sets={k: len(v) for k, v in planned.items()},
        voices={k: [vars(v) for v in vs] for k, vs in VOICES.items()},
        snr_db=[args.snr_low, args.snr_high], shift_rate=args.shift_rate,
        shift_snr_db=args.shift_snr, seed=args.seed, language=LANG,
        text=str(args.text),
    )
    (args.out / "corpus.json").write_text(json.dumps(info, indent=1) + "\n")
    logging.info(f"{args.out}/data: {info['sets']}")


if __name__ == "__main__":
    main()
