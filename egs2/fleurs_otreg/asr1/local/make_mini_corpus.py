#!/usr/bin/env python3
"""Write a tiny, learnable, multilingual corpus in the FLEURS layout (no network).

    <out>/<lang>/{train,dev,test}.tsv            FLEURS' 7-field tsv
    <out>/<lang>/audio/{train,dev,test}/<id>.wav 16 kHz mono
    <out>/common_voice/<cv lang>/{test.tsv,clips/}  a "cross-domain" test set in the
                                                    Common Voice layout (CoVoST-2 audio)

Each "language" has its own small word list. Speech is synthetic but learnable: every
character is a 70 ms chord of two tones whose frequencies identify it (a per-language
table of distinct (low, high) pairs), words are separated by silences, and each "speaker" shifts pitch, speed and
loudness a little; white noise is added. The cross-domain set uses new speakers,
more noise and a different loudness/pitch range, so it is harder, like CoVoST-2 vs
FLEURS. Sentences are random word sequences; raw transcripts are capitalised and end
with a full stop (the scorer's normaliser removes both).

Deterministic: the same arguments give byte-identical files (numpy seeded per file).
"""

from __future__ import annotations

import argparse
import csv
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

FS = 16000
#: Mini "languages": FLEURS codes (so the recipe treats them as FLEURS languages), with
#: a word list each. Common Voice code used for the cross-domain set.
LEXICON = {
    "en_us": ("en", ["ba", "dog", "kit", "sun", "red", "map", "lot", "fin"]),
    "de_de": ("de", ["haus", "ja", "tor", "mut", "see", "rad", "wo", "eis"]),
}
CHAR_MS, GAP_MS, EDGE_MS = 70, 60, 100


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, key)).encode()))


#: Tone grids (Hz): every character is one (low, high) pair, so two characters differ
#: by at least one tone and >= 250 Hz, several mel bins apart even after a speaker's
#: pitch shift.
LOW_TONES = (300, 550, 850, 1200, 1650, 2200)
HIGH_TONES = (2900, 3500, 4200, 5000, 5900, 6900)


def char_tones(lang: str) -> dict[str, tuple[float, float]]:
    """Character -> (f1, f2) Hz, a per-language assignment (the same letter sounds
    different in another language, like a different phone set)."""
    chars = sorted({c for w in LEXICON[lang][1] for c in w})
    pairs = [(lo, hi) for lo in LOW_TONES for hi in HIGH_TONES]
    order = _rng("tones", lang).permutation(len(pairs))
    if len(chars) > len(pairs):
        raise ValueError(f"{lang}: {len(chars)} characters but only {len(pairs)} tone pairs")
    return {c: (float(pairs[i][0]), float(pairs[i][1])) for c, i in zip(chars, order)}


def synth(words: list[str], lang: str, speaker: tuple[float, float, float], noise: float,
          r: np.random.Generator) -> np.ndarray:
    pitch, speed, gain = speaker
    tones = char_tones(lang)
    n_char = int(FS * CHAR_MS / 1000 / speed)
    t = np.arange(n_char) / FS
    env = np.hanning(n_char)
    pieces = [np.zeros(int(FS * EDGE_MS / 1000))]
    for w in words:
        for c in w:
            f1, f2 = tones[c]
            pieces.append(env * (np.sin(2 * np.pi * f1 * pitch * t) + 0.6 * np.sin(2 * np.pi * f2 * pitch * t)))
        pieces.append(np.zeros(int(FS * GAP_MS / 1000 / speed)))
    pieces.append(np.zeros(int(FS * EDGE_MS / 1000)))
    x = gain * 0.3 * np.concatenate(pieces)
    x = x + noise * r.standard_normal(x.shape)
    return np.clip(x, -1, 1).astype(np.float32)


def sentences(lang: str, split: str, n: int) -> list[list[str]]:
    r = _rng("text", lang, split)
    words = LEXICON[lang][1]
    return [list(r.choice(words, size=int(r.integers(1, 3)))) for _ in range(n)]


def raw_text(words: list[str]) -> str:
    s = " ".join(words)
    return s[0].upper() + s[1:] + "."


def write_fleurs(out: Path, lang: str, split: str, n: int) -> None:
    adir = out / lang / "audio" / split
    adir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, words in enumerate(sentences(lang, split, n)):
        r = _rng("audio", lang, split, i)
        spk = (r.uniform(0.99, 1.01), r.uniform(0.9, 1.1), r.uniform(0.6, 1.0))
        x = synth(words, lang, spk, noise=0.01, r=r)
        name = f"{zlib.crc32(f'{lang}{split}{i}'.encode()):010d}.wav"
        sf.write(adir / name, x, FS, subtype="PCM_16")
        gender = "MALE" if i % 2 else "FEMALE"
        rows.append([str(1000 + i), name, raw_text(words), " ".join(words),
                     " ".join("|".join(words)), str(len(x)), gender])
    with open(out / lang / f"{split}.tsv", "w", encoding="utf-8") as f:
        f.writelines("\t".join(r) + "\n" for r in rows)


def write_common_voice(out: Path, lang: str, n: int) -> None:
    cv, _ = LEXICON[lang]
    d = out / "common_voice" / cv
    (d / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, words in enumerate(sentences(lang, "cv", n)):
        r = _rng("cv", lang, i)
        spk = (r.uniform(0.98, 1.02), r.uniform(0.85, 1.15), r.uniform(0.4, 1.2))
        x = synth(words, lang, spk, noise=0.03, r=r)
        name = f"common_voice_{cv}_{i:05d}.wav"
        sf.write(d / "clips" / name, x, FS, subtype="PCM_16")
        rows.append({"client_id": f"spk{i % 3}", "path": name, "sentence": raw_text(words),
                     "up_votes": "2", "down_votes": "0", "age": "", "gender": "", "accent": ""})
    with open(d / "test.tsv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--langs", default=" ".join(LEXICON))
    p.add_argument("--n_train", type=int, default=300, help="per language")
    p.add_argument("--n_dev", type=int, default=16)
    p.add_argument("--n_test", type=int, default=16)
    p.add_argument("--n_cross", type=int, default=16, help="cross-domain test, per language")
    a = p.parse_args(argv)
    for lang in a.langs.split():
        if lang not in LEXICON:
            raise SystemExit(f"make_mini_corpus: no mini lexicon for {lang!r} (have {', '.join(LEXICON)})")
        for split, n in (("train", a.n_train), ("dev", a.n_dev), ("test", a.n_test)):
            write_fleurs(a.out, lang, split, n)
        if a.n_cross:
            write_common_voice(a.out, lang, a.n_cross)
    print(f"mini corpus ({a.langs}) written to {a.out}")


if __name__ == "__main__":
    main()
