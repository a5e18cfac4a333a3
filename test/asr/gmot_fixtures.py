"""Tiny GM-OT models, configs, batches and data dirs for the asr tests (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

CHARS = list("你好世界我们是中国人的大家早上")
TOKENS = ["<blank>", "<unk>"] + CHARS + ["<sos/eos>"]
TEACHER_DIM = 32


def tiny_config(tmp: Path, **model_conf) -> Path:
    """A CTC-only tiny Conformer with ``model: gmot``; returns the YAML path."""
    (tmp / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    conf = dict(
        token_list=str(tmp / "tokens.txt"),
        token_type="char",
        frontend="default",
        frontend_conf=dict(n_fft=256, hop_length=80, win_length=200, n_mels=20),
        normalize="utterance_mvn",
        encoder="conformer",
        encoder_conf=dict(
            output_size=16, attention_heads=2, linear_units=32, num_blocks=1,
            input_layer="conv2d", cnn_module_kernel=3, dropout_rate=0.0,
            positional_dropout_rate=0.0, attention_dropout_rate=0.0,
        ),
        decoder=None,
        model="gmot",
        model_conf=dict(
            ctc_weight=1.0, teacher_dim=TEACHER_DIM, teacher=str(tmp / "bert"),
            **model_conf,
        ),
    )
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(conf, allow_unicode=True), encoding="utf-8")
    return path


def build_model(config: Path):
    """The model exactly as ``asr_train`` builds it from ``config``."""
    from espnet_otreg.tasks.asr import GMOTASRTask

    args = GMOTASRTask.get_parser().parse_args(["--config", str(config)])
    return GMOTASRTask.build_model(args)


def batch(B=3, seconds=(1.0, 0.8, 0.6), n_tok=(5, 4, 3), seed=0, teacher=True):
    """Random speech (16 kHz) + char ids + cached teacher features, padded."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([int(16000 * s) for s in seconds[:B]])
    speech = torch.randn(B, int(lens.max()), generator=g) * 0.1
    tl = torch.tensor(n_tok[:B])
    text = torch.full((B, int(tl.max())), -1, dtype=torch.long)
    for b, n in enumerate(tl.tolist()):
        text[b, :n] = torch.randint(2, 2 + len(CHARS), (n,), generator=g)
    out = dict(speech=speech, speech_lengths=lens, text=text, text_lengths=tl)
    if teacher:
        out["teacher_feats"] = torch.randn(B, int(tl.max()), TEACHER_DIM, generator=g)
        out["teacher_feats_lengths"] = tl.clone()
    return out


def write_data_dir(d: Path, utts: dict, seed=0) -> Path:
    """wav files + wav.scp + text for ``{utt_id: transcript}`` (random audio)."""
    rng = np.random.default_rng(seed)
    (d / "wav").mkdir(parents=True, exist_ok=True)
    scp, txt = [], []
    for i, (uid, text) in enumerate(sorted(utts.items())):
        wav = d / "wav" / f"{uid}.wav"
        sf.write(wav, (rng.standard_normal(8000 + 1600 * (i % 4)) * 0.1).astype("float32"), 16000)
        scp.append(f"{uid} {wav}")
        txt.append(f"{uid} {text}")
    (d / "wav.scp").write_text("\n".join(scp) + "\n", encoding="utf-8")
    (d / "text").write_text("\n".join(txt) + "\n", encoding="utf-8")
    return d
