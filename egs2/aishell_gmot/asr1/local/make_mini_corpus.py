#!/usr/bin/env python3
"""Write a tiny synthetic corpus in AISHELL-1's layout and archive format (no network).

The mini recipe (``run.sh --mini true``) runs every stage on it, through the same
code as the real corpus, download and extraction included (``file://`` URLs):

    <out>/data_aishell.tgz        data_aishell/wav/<spk>.tar.gz (each holding
                                  {train,dev,test}/<spk>/BAC009<spk>W<nnnn>.wav) and
                                  data_aishell/transcript/aishell_transcript_v0.8.txt
    <out>/resource_aishell.tgz    resource_aishell/lexicon.txt, speaker.info
    <out>/md5sums                 "<md5>  <archive>" for both archives
    <out>/teacher/                a tiny random BERT (save_pretrained) whose vocabulary
                                  is the corpus characters

Audio is learnable: every character is a fixed acoustic pattern (two partials with a
character-specific pitch glide, like a tone), 16 kHz, with random durations per
occurrence, per-speaker pitch scaling, pauses between words and background noise at
15-25 dB SNR. Transcripts are word-segmented like AISHELL's. Deterministic for a
given ``--seed``; archives are byte-identical across runs (fixed tar mtimes).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

FS = 16000
CHARS = "我你他是的在有人大中国好学生天上"
# A small word-segmented lexicon over CHARS (1-3 characters per word).
WORDS = ["我", "你", "他", "是", "的", "在", "有", "人", "大", "中国", "好", "学生", "天上",
         "大人", "国人", "有人", "上学", "中学生", "好人", "天天", "他的"]
SETS = {"train": ["S0002", "S0003", "S0004", "S0005"],
        "dev": ["S0724", "S0725"], "test": ["S0764", "S0765"]}


def char_sound(k: int, dur: float, spk_scale: float, rng: np.random.Generator) -> np.ndarray:
    """Character ``k``: two partials (base and a higher formant) with a tone glide."""
    n = int(dur * FS)
    t = np.arange(n) / FS
    f0 = (140 + 22 * k) * spk_scale
    glide = [-0.25, 0.0, 0.25, 0.15][k % 4]  # falling, flat, rising, dipping
    f = f0 * (1 + glide * np.linspace(-0.5, 0.5, n) ** (2 if k % 4 == 3 else 1))
    phase = 2 * np.pi * np.cumsum(f) / FS
    formant = 2 * np.pi * (900 + 180 * ((k * 7) % len(CHARS))) * spk_scale * t
    x = np.sin(phase) + 0.6 * np.sin(formant + rng.uniform(0, 2 * np.pi))
    env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms attack and release
    return (x * env).astype(np.float32)


def utterance(words, spk_scale: float, rng: np.random.Generator) -> np.ndarray:
    parts = [np.zeros(int(rng.uniform(0.1, 0.3) * FS), np.float32)]
    for w in words:
        for ch in w:
            parts.append(char_sound(CHARS.index(ch), rng.uniform(0.10, 0.22), spk_scale, rng))
            parts.append(np.zeros(int(rng.uniform(0.0, 0.03) * FS), np.float32))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.15) * FS), np.float32))
    parts.append(np.zeros(int(rng.uniform(0.1, 0.3) * FS), np.float32))
    x = np.concatenate(parts)
    snr_db = rng.uniform(15, 25)
    noise = rng.standard_normal(len(x)).astype(np.float32)
    x = x + noise * np.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _tgz(members) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members:
            _tar_add(tar, name, data)
    return gzip.compress(raw.getvalue(), mtime=0)


def make(out: Path, utts_per_spk: dict, seed: int) -> None:
    rng = np.random.default_rng(seed)
    transcript, spk_tars = [], []
    n = 0
    for dset, spks in SETS.items():
        for spk in spks:
            scale = rng.uniform(0.93, 1.07)
            members = []
            for i in range(utts_per_spk[dset]):
                words = [WORDS[j] for j in rng.integers(0, len(WORDS), rng.integers(3, 8))]
                x = utterance(words, scale, rng)
                utt = f"BAC009{spk}W{i + 1:04d}"
                buf = io.BytesIO()
                sf.write(buf, x, FS, format="WAV", subtype="PCM_16")
                members.append((f"{dset}/{spk}/{utt}.wav", buf.getvalue()))
                transcript.append(f"{utt} {' '.join(words)}")
                n += 1
            spk_tars.append((f"data_aishell/wav/{spk}.tar.gz", _tgz(members)))
    text = "\n".join(sorted(transcript)) + "\n"
    data = _tgz(spk_tars + [("data_aishell/transcript/aishell_transcript_v0.8.txt",
                             text.encode("utf-8"))])
    lexicon = "".join(f"{w} {' '.join(w)}\n" for w in sorted(set(WORDS)))
    spk_info = "".join(f"{s[1:]} M 20\n" for spks in SETS.values() for s in spks)
    resource = _tgz([("resource_aishell/lexicon.txt", lexicon.encode("utf-8")),
                     ("resource_aishell/speaker.info", spk_info.encode("utf-8"))])
    out.mkdir(parents=True, exist_ok=True)
    sums = []
    for name, blob in (("data_aishell.tgz", data), ("resource_aishell.tgz", resource)):
        (out / name).write_bytes(blob)
        sums.append(f"{hashlib.md5(blob).hexdigest()}  {name}\n")
    (out / "md5sums").write_text("".join(sums))
    print(f"mini corpus: {n} utterances, {len(CHARS)} characters -> {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train_utts_per_spk", type=int, default=25)
    p.add_argument("--eval_utts_per_spk", type=int, default=10)
    p.add_argument("--teacher", action="store_true", help="also write <out>/teacher")
    a = p.parse_args()
    if (a.out / "md5sums").is_file():
        print(f"mini corpus: {a.out} exists, keeping it")
    else:
        make(a.out, {"train": a.train_utts_per_spk, "dev": a.eval_utts_per_spk,
                     "test": a.eval_utts_per_spk}, a.seed)
    if a.teacher and not (a.out / "teacher" / "config.json").is_file():
        from espnet_otreg.asr.tiny import build_tiny_bert

        build_tiny_bert(a.out / "teacher", [CHARS], seed=a.seed)
        print(f"tiny BERT teacher -> {a.out / 'teacher'}")


if __name__ == "__main__":
    main()
