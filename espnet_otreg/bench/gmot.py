"""Models and a batch for ``python -m espnet_otreg.bin.bench_step --model gmot``.

:func:`build_bench_models` returns the plain Conformer-CTC model (``model: espnet``,
the paper's baseline) and the GM-OT model (``model: gmot``, default hyperparameters,
cached teacher features) with identical encoder and CTC weights, built by the Task
from the same config, so the step-time difference is GM-OT's alone: the adapter, the
FGW coupling, the projection and the fused CTC.

Presets (random weights and audio, no download):

- ``tiny``: a 2-block, 64-d Conformer; B=4 utterances of 2-3 s (a CI smoke test).
- ``recipe``: the recipe's Conformer (``conf/train_asr_gmot.yaml``: 16 blocks, 256-d,
  4 heads, 2048 FFN, kernel 15, 80 mel bins, 4x subsampling), teacher dim 768,
  B=32 utterances of 3-8 s with 10-25 characters (AISHELL-1 averages ~4.5 s and 14
  characters).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from espnet_otreg.bench import build_from_config
from espnet_otreg.ot import lengths_to_mask

PRESETS = {
    "tiny": dict(
        encoder=dict(output_size=64, attention_heads=2, linear_units=128, num_blocks=2,
                     cnn_module_kernel=7),
        n_mels=40, teacher_dim=64, vocab=200, batch=4, seconds=(2.0, 3.0), chars=(10, 20),
    ),
    "recipe": dict(
        encoder=dict(output_size=256, attention_heads=4, linear_units=2048, num_blocks=16,
                     cnn_module_kernel=15),
        n_mels=80, teacher_dim=768, vocab=4233, batch=32, seconds=(3.0, 8.0), chars=(10, 25),
    ),
}


def _config(p: dict, model: str) -> Dict:
    tokens = ["<blank>", "<unk>"] + [f"c{i}" for i in range(p["vocab"] - 3)] + ["<sos/eos>"]
    return dict(
        token_list=tokens,
        frontend="default",
        frontend_conf=dict(n_fft=512, hop_length=160, win_length=400, n_mels=p["n_mels"]),
        specaug=None,
        normalize="utterance_mvn",
        encoder="conformer",
        encoder_conf=dict(
            input_layer="conv2d", normalize_before=True, macaron_style=True,
            rel_pos_type="latest", pos_enc_layer_type="rel_pos",
            selfattention_layer_type="rel_selfattn", activation_type="swish",
            use_cnn_module=True, dropout_rate=0.1, **p["encoder"],
        ),
        decoder=None,
        model=model,
        model_conf=dict(ctc_weight=1.0, **(dict(teacher_dim=p["teacher_dim"]) if model == "gmot" else {})),
    )


def build_bench_models(
    device: str, preset: str, batch_size: Optional[int] = None
) -> List[Tuple[str, torch.nn.Module, Dict]]:
    """``[("ctc", model, batch), ("gmot", model, batch)]``; ``model(**batch)`` gives
    ``(loss, stats, weight)`` and every parameter is trained."""
    from espnet_otreg.tasks.asr import GMOTASRTask

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    torch.manual_seed(0)
    gmot = build_from_config(GMOTASRTask, _config(p, "gmot"))
    ctc = build_from_config(GMOTASRTask, _config(p, "espnet"))
    shared = {k: v for k, v in gmot.state_dict().items() if k in ctc.state_dict()}
    ctc.load_state_dict(shared, strict=True)

    g = torch.Generator().manual_seed(0)
    B = batch_size or p["batch"]
    lo, hi = p["seconds"]
    lens = (16000 * (lo + (hi - lo) * torch.rand(B, generator=g))).long()
    speech = 0.1 * torch.randn(B, int(lens.max()), generator=g)
    n_chars = torch.randint(p["chars"][0], p["chars"][1] + 1, (B,), generator=g)
    text = torch.randint(2, p["vocab"] - 1, (B, int(n_chars.max())), generator=g)
    text = text.masked_fill(~lengths_to_mask(n_chars), -1)
    base = dict(speech=speech, speech_lengths=lens, text=text, text_lengths=n_chars)
    teacher = dict(
        teacher_feats=torch.randn(B, int(n_chars.max()), p["teacher_dim"], generator=g),
        teacher_feats_lengths=n_chars.clone(),
    )
    to = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
    return [
        ("ctc", ctc.to(device).train(), to(base)),
        ("gmot", gmot.to(device).train(), to({**base, **teacher})),
    ]
