#!/usr/bin/env python3
"""How much of gamma* comes from the speech, and how epsilon changes it (docs/experiments.md).

For a trained GM-OT model and a data set, each setting recomputes gamma* of every
utterance with the model's own encoder and adapter (``--setting eps0.02:epsilon=0.02``
solves with a copy of the model's ``GMOTAligner`` with those options changed,
``GMOTAligner.replace``: a key that is not an option is an error; ``trained`` keeps
them) and
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
from typing import Dict, List, Tuple

import numpy as np
import torch
import yaml

from espnet_otreg import ot
from espnet_otreg.ot import measures


#: The reference: where the model's own CTC first emits each token (the package's).
ctc_forced_align = measures.ctc_segment_starts


def plan_metrics(plan, first, slack: int = 1) -> Dict[str, float]:
    """Metrics of one (N, M) plan against the emission frames ``first`` (M,)."""
    plan = torch.as_tensor(plan, dtype=torch.float64)
    first = torch.as_tensor(first, dtype=torch.long)
    ok, steps = measures.monotonic_steps(plan[None], torch.ones(plan.shape[:1], dtype=torch.bool)[None])
    return {
        "on_target": float(measures.on_target_mass(plan, first, slack)),
        "perplexity": float(measures.tokens_per_frame(plan[None])[0]),
        "monotonic": float(ok[0] / steps[0]) if int(steps[0]) else 1.0,
    }


def parse_setting(spec: str) -> Tuple[str, Dict[str, object]]:
    """``name:key=value,...``; values read as YAML (``3`` an int, ``0.1`` a float,
    ``null`` None), as ESPnet reads ``--model_conf key=value``."""
    name, _, rest = spec.partition(":")
    over = {}
    for kv in filter(None, rest.split(",")):
        k, sep, v = kv.partition("=")
        if not sep:
            raise ValueError(f"--setting {spec!r}: expected name:key=value,...")
        over[k] = yaml.safe_load(v)
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
    settings = []
    for spec in args.setting:
        name, over = parse_setting(spec)
        try:  # a copy of the trained aligner with these options: a wrong key is an error
            settings.append((name, g.replace(**over)))
        except ValueError as e:
            raise ValueError(f"setting {name!r}: {e}") from None
    loader = GMOTASRTask.build_streaming_iterator(
        [tuple(x.rsplit(",", 2)) for x in args.data_path_and_name_and_type],
        dtype="float32", batch_size=args.batch_size, num_workers=0,
        preprocess_fn=GMOTASRTask.build_preprocess_fn(train_args, False),
        collate_fn=GMOTASRTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=True, inference=False,
    )
    rows: Dict[str, List[Dict[str, float]]] = {
        f"{n}{k}": [] for n, _ in settings for k in ("", " prior")}
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
            plans = {}
            for name, ga in settings:
                eps = ga.scheduled_epsilon()  # (a trained schedule: its last value)
                plans[name] = ga(h, h_mask, z, z_mask, epsilon=eps).plan
                # the content-free plan at the same effective epsilon (cost / scale
                # with epsilon is the cost with epsilon * scale)
                prior_cost = ga.rho * ot.temporal_prior(h_mask, z_mask)
                scale = 1.0
                if ga.epsilon_mode == "relative":
                    scale = ot.max_cost_scale(ot.cosine(h, z, h_mask, z_mask) + prior_cost)
                plans[f"{name} prior"] = ot.sinkhorn(
                    prior_cost / scale, h_mask, z_mask, epsilon=eps, max_iter=5000,
                    tol=1e-7).plan
        for b in range(len(keys)):
            n, m = int(enc_lens[b]), int(z_lens[b])
            if m != len(firsts[b]):
                raise ValueError(f"{keys[b]}: {m} teacher tokens for {len(firsts[b])} characters")
            for name, plan in plans.items():
                rows[name].append(plan_metrics(plan[b, :n, :m].double().numpy(), firsts[b]))
        n_utt += len(keys)
    logging.info("%s: %d utterances", exp, n_utt)
    run_name = exp.name.replace("asr_sweep_", "")
    model_desc = f"alpha {g.alpha:g}, rho {g.rho:g}, epsilon {g.scheduled_epsilon():g} ({g.epsilon_mode})"
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
