#!/usr/bin/env python3
"""How much of gamma* comes from the speech, and how epsilon changes it (docs/experiments.md).

For a trained GM-OT model and a data set, each setting recomputes gamma* of every
utterance with the model's own encoder and adapter (``--setting eps0.02:epsilon=0.02``
overrides attributes of the model's ``GMOTAligner``; ``trained`` keeps them) and
compares it with where the model's own CTC places each token:

- reference: the CTC forced alignment (Viterbi over the transcript) of the same
  encoder output; token j occupies the frames from its first emission up to the next
  token's first emission (its trailing blanks);
- ``on_target``: share of the plan's mass inside those segments (+-1 frame);
- ``perplexity``: exp(H(gamma) - H(a)), the effective number of tokens per frame
  (1 = each frame on one token; M = spread evenly);
- ``monotonic``: as in the training stats.

Next to each setting's gamma*, its content-free counterpart: the balanced entropic OT
plan of ``rho T`` alone at the same effective epsilon (the temporal prior with no
speech in it; for ``epsilon_mode: relative``, epsilon times the pair's cost scale, as
the aligner uses). What the content adds is the difference between the two.

    python local/coupling_diagnostics.py --exp tts/exp/asr_sweep_tts_gmot_ep16_seed0 \\
        --setting trained --setting eps0.02:epsilon=0.02 --setting rel:epsilon_mode=relative

One table row per run (``--exp``, repeatable) and setting.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from espnet_otreg import ot


def ctc_forced_align(log_probs: np.ndarray, labels: Sequence[int], blank: int = 0) -> np.ndarray:
    """Frame of the first emission of each label on the best CTC path (Viterbi,
    ``torchaudio.functional.forced_align``).

    ``log_probs``: (T, V) frame log-posteriors; ``labels``: L token ids (no blank).
    Returns L frame indices, non-decreasing. Needs T >= L + repeats.
    """
    import torchaudio.functional as taf

    repeats = sum(a == b for a, b in zip(labels, labels[1:]))
    if log_probs.shape[0] < len(labels) + repeats:
        raise ValueError(f"{log_probs.shape[0]} frames cannot hold {len(labels)} labels "
                         "with their repeats")
    if not labels:
        return np.zeros(0, np.int64)
    path, scores = taf.forced_align(
        torch.as_tensor(log_probs, dtype=torch.float32)[None],
        torch.tensor([list(labels)], dtype=torch.int32), blank=blank)
    spans = taf.merge_tokens(path[0], scores[0].exp(), blank=blank)
    return np.array([span.start for span in spans], np.int64)


def plan_metrics(plan: np.ndarray, first: np.ndarray, slack: int = 1) -> Dict[str, float]:
    """Metrics of one (N, M) plan against the emission frames ``first`` (M,)."""
    n, m = plan.shape
    p = plan / max(plan.sum(), 1e-30)
    a = p.sum(1)
    h_p = -(p[p > 0] * np.log(p[p > 0])).sum()
    h_a = -(a[a > 0] * np.log(a[a > 0])).sum()
    ends = np.append(first[1:], n)
    frames = np.arange(n)[:, None]
    inside = (frames >= first[None] - slack) & (frames < ends[None] + slack)
    best = plan.argmax(1)
    return {
        "on_target": float(p[inside].sum()),
        "perplexity": float(np.exp(h_p - h_a)),
        "monotonic": float((best[1:] >= best[:-1]).mean()) if n > 1 else 1.0,
    }


def parse_setting(spec: str) -> Tuple[str, Dict[str, object]]:
    name, _, rest = spec.partition(":")
    over = {}
    for kv in filter(None, rest.split(",")):
        k, sep, v = kv.partition("=")
        if not sep:
            raise ValueError(f"--setting {spec!r}: expected name:key=value,...")
        try:
            over[k] = float(v)
        except ValueError:
            over[k] = v
    return name, over


def run(args, exp: Path) -> List[str]:
    """The table rows of one run directory."""
    from espnet_otreg.tasks.asr import GMOTASRTask

    model_file = exp / args.model
    model, train_args = GMOTASRTask.build_model_from_file(exp / "config.yaml", model_file, "cpu")
    if type(model).__name__ != "ESPnetGMOTModel":
        raise ValueError(f"{exp}/config.yaml is not a GM-OT model (model: gmot)")
    model.eval()
    g = model.gmot
    settings = [parse_setting(s) for s in args.setting]
    for name, over in settings:
        for k in over:
            if not hasattr(g, k):
                raise ValueError(f"setting {name!r}: the aligner has no attribute {k!r}")
    loader = GMOTASRTask.build_streaming_iterator(
        [tuple(x.rsplit(",", 2)) for x in args.data_path_and_name_and_type],
        dtype="float32", batch_size=args.batch_size, num_workers=0,
        preprocess_fn=GMOTASRTask.build_preprocess_fn(train_args, False),
        collate_fn=GMOTASRTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=True, inference=False,
    )
    rows: Dict[str, List[Dict[str, float]]] = {
        f"{n}{k}": [] for n, _ in settings for k in ("", " prior")}
    saved = {k: getattr(g, k) for _, over in settings for k in over}
    n_utt = 0
    for keys, batch in loader:
        with torch.no_grad():
            enc, enc_lens = model.encode(batch["speech"], batch["speech_lengths"])
            logp = model.ctc.log_softmax(enc).numpy()
            z, z_lens = model.teacher_features(
                batch["text"], batch["text_lengths"], batch.get("teacher_feats"),
                batch.get("teacher_feats_lengths"), keys)
            firsts = []
            for b, key in enumerate(keys):
                labels = batch["text"][b, : int(batch["text_lengths"][b])].tolist()
                try:
                    firsts.append(ctc_forced_align(logp[b, : int(enc_lens[b])], labels))
                except ValueError as e:
                    raise ValueError(f"{key}: {e}") from None
            h_mask = ot.lengths_to_mask(enc_lens, enc.size(1))
            z_mask = ot.lengths_to_mask(z_lens, z.size(1))
            h = model.adapter(enc)
            prior_cost = g.rho * ot.temporal_prior(h_mask, z_mask)
            plans = {}
            for name, over in settings:
                for k, v in over.items():
                    setattr(g, k, v)
                eps = float(over.get("epsilon", model.epsilon()))  # (a schedule's end)
                plans[name] = g(h, h_mask, z, z_mask, epsilon=eps).plan
                # the content-free plan at the same effective epsilon (cost / scale
                # with epsilon is the cost with epsilon * scale)
                scale = 1.0
                if g.epsilon_mode == "relative":
                    full = ot.cosine(h, z, h_mask, z_mask) + prior_cost
                    scale = full.amax((1, 2)).clamp_min(1e-8)[:, None, None]
                plans[f"{name} prior"] = ot.sinkhorn(
                    prior_cost / scale, h_mask, z_mask, epsilon=eps, max_iter=5000,
                    tol=1e-7).plan
                for k, v in saved.items():
                    setattr(g, k, v)
        for b in range(len(keys)):
            n, m = int(enc_lens[b]), int(z_lens[b])
            if m != len(firsts[b]):
                raise ValueError(f"{keys[b]}: {m} teacher tokens for {len(firsts[b])} characters")
            for name, plan in plans.items():
                rows[name].append(plan_metrics(plan[b, :n, :m].double().numpy(), firsts[b]))
        n_utt += len(keys)
    logging.info("%s: %d utterances", exp, n_utt)
    run_name = exp.name.replace("asr_sweep_", "")
    model_desc = f"alpha {g.alpha:g}, rho {g.rho:g}, epsilon {model.epsilon():g} ({g.epsilon_mode})"
    lines = []
    for name, _ in settings:
        mean = {}
        for k in ("", " prior"):
            ms = rows[name + k]
            mean[k] = {m: float(np.mean([r[m] for r in ms])) for m in ms[0]}
        g_, p_ = mean[""], mean[" prior"]
        lines.append(f"| {run_name} | {model_desc} | {name} | {g_['on_target']:.3f} | "
                     f"{g_['perplexity']:.2f} | {g_['monotonic']:.3f} | {p_['on_target']:.3f} "
                     f"| {p_['perplexity']:.2f} |")
    return lines


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, action="append", required=True,
                   help="a GM-OT run directory (repeatable)")
    p.add_argument("--model", default="valid.cer_ctc.ave.pth")
    p.add_argument("--data_path_and_name_and_type", action="append", default=None)
    p.add_argument("--set", default="dev", help="with the default data paths (tts/dump)")
    p.add_argument("--setting", action="append", default=None,
                   help="name[:key=value,...] (default: trained)")
    p.add_argument("--batch_size", type=int, default=16)
    return p


def main(argv=None) -> str:
    args = get_parser().parse_args(argv)
    args.setting = args.setting or ["trained"]
    if args.data_path_and_name_and_type is None:
        s = args.set
        args.data_path_and_name_and_type = [
            f"tts/dump/raw/{s}/wav.scp,speech,sound", f"tts/dump/raw/{s}/text,text,text",
            f"tts/dump/teacher/{s}/feats.scp,teacher_feats,kaldi_ark"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lines = ["| run | model | setting | gamma*: on-target mass | tokens per frame | monotonic "
             "| prior alone: on-target mass | tokens per frame |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for exp in args.exp:
        lines += run(args, exp)
    md = "\n".join(lines) + "\n"
    print(md)
    return md


if __name__ == "__main__":
    main()
