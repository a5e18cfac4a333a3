"""Shared helpers for the SLM tests: tiny models on disk, a tiny data dir, batches."""

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from espnet_otreg.slm.tiny import build_tiny_llm, build_tiny_whisper

SENTENCES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "hello world",
    "speech to text with optimal transport",
    "the quick brown fox jumps over the lazy dog",
    "bonjour le monde",
]
PROMPT_WORDS = ["Transcribe the following English French speech.", "Transcript:"]


def build_tiny_dirs(root: Path, max_position_embeddings: int = 512):
    root = Path(root)
    llm = build_tiny_llm(root / "llm", SENTENCES + PROMPT_WORDS,
                         max_position_embeddings=max_position_embeddings)
    whisper = build_tiny_whisper(root / "whisper")
    return llm, whisper


def task_args(llm_dir, whisper_dir, **model_conf) -> argparse.Namespace:
    """Namespace as SLMTask.build_model gets it from YAML (tiny sizes)."""
    from espnet_otreg.tasks.slm import SLMTask

    parser = SLMTask.get_parser()
    args = parser.parse_args([])
    args.encoder = "hf_whisper"
    args.encoder_conf = dict(model_name_or_path=str(whisper_dir), pad_to_30s=False)
    args.llm_conf = dict(model_name_or_path=str(llm_dir), dtype="float32")
    args.projector_conf = dict(stack=4, hidden_size=64)
    args.model_conf = dict(model_conf)
    return args


def make_batch(preprocess, items, with_text=True):
    """items: list of (uid, n_samples, text, lang) -> collated batch dict (torch)."""
    from espnet2.train.collate_fn import CommonCollateFn

    rng = np.random.RandomState(0)
    data = []
    for uid, n, text, lang in items:
        d = {"speech": (0.1 * rng.randn(n)).astype(np.float32), "lang": lang}
        if with_text:
            d["text"] = text
        data.append((uid, preprocess(uid, d)))
    uids, batch = CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)(data)
    return uids, batch


def write_data_dir(root: Path, n_utts: int = 6, sr: int = 16000):
    """A Kaldi-style data dir with random-noise wavs of 0.5..1.5 s."""
    root = Path(root)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(1)
    lines = {"wav.scp": [], "text": [], "utt2lang": [], "utt2spk": []}
    for i in range(n_utts):
        uid = f"spk{i % 2}-utt{i:02d}"
        n = int(sr * (0.5 + i / max(n_utts - 1, 1)))
        path = root / "wav" / f"{uid}.wav"
        sf.write(path, (0.1 * rng.randn(n)).astype(np.float32), sr)
        lines["wav.scp"].append(f"{uid} {path}")
        lines["text"].append(f"{uid} {SENTENCES[i % len(SENTENCES)]}")
        lines["utt2lang"].append(f"{uid} {'fr_fr' if i % 3 == 2 else 'en_us'}")
        lines["utt2spk"].append(f"{uid} spk{i % 2}")
    for name, ls in lines.items():
        (root / name).write_text("\n".join(sorted(ls)) + "\n")
    return root


def trainable(model: torch.nn.Module):
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)
