#!/usr/bin/env python3
"""Modality gap between a trained SLM's speech embeddings and its transcript embeddings.

::

    python -m espnet_otreg.bin.modality_gap --slm_train_config exp/slm/config.yaml \\
        --slm_model_file exp/slm/valid.acc.ave.pth --data_dir dump/raw/test \\
        --output_dir exp/slm/modality_gap_test [--ngpu 1] [--batch_size 16]

On each utterance of the data dir (wav.scp, text, optional utt2lang), with ``z`` the
projector outputs and ``e`` the LLM input embeddings of the transcript tokens:

- ``ot_cost``: the OTReg loss ``<P*, C>`` with the model's OT options (cost, epsilon,
  de-duplication, blank anchor), mean over utterances; ``--ot_cost`` etc. measure every
  model with one setting instead, so that models trained with other options compare;
- ``matched_cos``: plan-weighted cosine of matched (speech frame, target) pairs;
- ``retrieval_r1`` / ``retrieval_r5``: utterance-level speech-to-text retrieval: the
  mean-pooled ``z`` of each utterance against the mean-pooled ``e`` of every transcript
  in the set (cosine); accuracy of the own transcript ranking first / in the top 5.
  Chance level is ``1 / n_utts``;
- ``speech_norm`` / ``text_norm``: the mean L2 norm of ``z`` (over frames) and of ``e``
  (over tokens). The squared-Euclidean OT cost is ``|z|^2 + |e|^2 - 2 z.e``: with a
  matched cosine near 0 it falls when ``|z|`` shrinks, so read it beside the norms
  (a model whose cost fell while the matched cosine and retrieval stayed put has
  matched scales, not aligned directions).

Per language too when the data dir has utt2lang (OT cost, matched cosine).
Writes ``modality_gap.json``, ``modality_gap.md`` (table) and ``modality_gap.png``
(histograms of per-utterance matched cosine and OT cost; the similarity matrix).
Utterances the model would skip in training (``ESPnetSLMModel.check_batch``: empty
transcript, audio shorter than one projector step, longer than the LLM context) are
counted and listed with the model's wording.
"""

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from espnet2.utils.types import str2bool

from espnet_otreg.ot import lengths_to_mask


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slm_train_config", required=True)
    p.add_argument("--slm_model_file", default=None)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--log_level", default="INFO")
    # One OT setting for every model compared (a base model trained with lambda_ot 0
    # and an OTReg model with the cosine cost are then measured alike); default: the
    # model's own options.
    p.add_argument("--ot_cost", choices=("sqeuclidean", "cosine"), default=None)
    p.add_argument("--ot_epsilon", type=float, default=None)
    p.add_argument("--ot_loss_scale", choices=("raw", "normalized"), default=None)
    p.add_argument("--ot_blank", type=str2bool, default=None)
    p.add_argument("--ot_dedup", type=str2bool, default=None)
    return p


def set_ot_options(model, args) -> dict:
    """Override the model's OT options with the given ones; returns the options used."""
    for key in ("cost", "epsilon", "loss_scale"):
        value = getattr(args, f"ot_{key}")
        if value is not None:
            model.ot_conf[key] = value
    for key in ("blank", "dedup"):
        value = getattr(args, f"ot_{key}")
        if value is not None:
            setattr(model, f"ot_{key}", value)
    return dict(model.ot_conf, blank=model.ot_blank, dedup=model.ot_dedup)


@torch.no_grad()
def measure(model, loader, device):
    rows, speech_pool, text_pool, skipped = [], [], [], {}
    for step, (keys, batch) in enumerate(loader, 1):
        if step % 20 == 0:
            logging.info(f"modality gap: {len(rows) + len(skipped)} utterances measured")
        batch = {k: v.to(device) for k, v in batch.items()}
        z, z_lens = model.encode(batch["speech"], batch["speech_lengths"])
        text, t_lens = batch["text"], batch["text_lengths"]
        # the utterances the model trains on (the same skip rules and wording)
        ok, _, reasons = model.check_batch(
            z_lens, t_lens, batch["prompt_pre_lengths"], batch["prompt_post_lengths"], keys
        )
        skipped.update({keys[i]: r for i, r in enumerate(reasons) if r is not None})
        idx = ok.nonzero().flatten()
        if idx.numel() == 0:
            continue
        z, z_lens, text, t_lens = z[idx], z_lens[idx], text[idx], t_lens[idx]
        z = z[:, : int(z_lens.max())].float()
        text = text[:, : int(t_lens.max())]
        res = model.otreg(z, z_lens, text, t_lens)
        e = model.llm.get_input_embeddings()(text.clamp_min(0)).float()
        speech_pool.append(masked_mean(z, z_lens))
        text_pool.append(masked_mean(e, t_lens))
        z_norm, e_norm = mean_norm(z, z_lens), mean_norm(e, t_lens)
        for j, i in enumerate(idx.tolist()):
            rows.append(
                dict(utt_id=keys[i], ot_cost=float(res.loss[j]), matched_cos=float(res.cosine[j]),
                     speech_norm=float(z_norm[j]), text_norm=float(e_norm[j]))
            )
    return rows, speech_pool, text_pool, skipped


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the first ``lengths[b]`` rows of ``x[b]``: ``(B, L, D)`` -> ``(B, D)``."""
    mask = lengths_to_mask(lengths, x.size(1))
    return (x * mask[..., None]).sum(1) / lengths[:, None]


def mean_norm(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean L2 norm of the first ``lengths[b]`` rows of ``x[b]``: ``(B, L, D)`` -> ``(B,)``."""
    return masked_mean(x.norm(dim=-1, keepdim=True), lengths)[:, 0]


def retrieval(speech_pool, text_pool, chunk: int = 1024, n_plot: int = 64):
    """R@1 / R@5 of speech -> transcript retrieval over the whole set, in row chunks
    (memory ``chunk x n_utts``, not ``n_utts^2``); returns the top-left ``n_plot`` block
    of the similarity matrix for the figure."""
    s = torch.nn.functional.normalize(torch.cat(speech_pool), dim=-1)
    t = torch.nn.functional.normalize(torch.cat(text_pool), dim=-1)
    r1 = r5 = 0.0
    for i in range(0, s.size(0), chunk):
        sim = s[i : i + chunk] @ t.T
        own = sim.gather(1, torch.arange(i, i + sim.size(0), device=sim.device)[:, None])
        rank = (sim > own).sum(1)  # how many transcripts beat the own one
        r1 += float((rank < 1).sum())
        r5 += float((rank < 5).sum())
    n = min(n_plot, s.size(0))
    block = (s[:n] @ t[:n].T).cpu().numpy()
    return block, r1 / s.size(0), r5 / s.size(0)


def plot(path: Path, rows, sim):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    ax[0].hist([r["matched_cos"] for r in rows], bins=30, color="tab:blue")
    ax[0].set(title="matched speech-text cosine", xlabel="cosine", ylabel="utterances")
    ax[1].hist([r["ot_cost"] for r in rows], bins=30, color="tab:orange")
    ax[1].set(title="OT cost <P*, C>", xlabel="cost", ylabel="utterances")
    n = len(sim)
    im = ax[2].imshow(sim, cmap="viridis", aspect="auto")
    ax[2].set(title=f"speech-to-text cosine (first {n})", xlabel="transcript", ylabel="speech")
    fig.colorbar(im, ax=ax[2])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s")
    from espnet_otreg.tasks.slm import SLMTask

    device = "cuda" if args.ngpu > 0 else "cpu"
    model, train_args = SLMTask.build_model_from_file(
        args.slm_train_config, args.slm_model_file, device
    )
    model.eval()
    ot_options = set_ot_options(model, args)
    data = Path(args.data_dir)
    triples = [(str(data / "wav.scp"), "speech", "sound"), (str(data / "text"), "text", "text")]
    if (data / "utt2lang").exists():
        triples.append((str(data / "utt2lang"), "lang", "text"))
    loader = SLMTask.build_streaming_iterator(
        triples,
        preprocess_fn=SLMTask.build_preprocess_fn(train_args, False),
        collate_fn=SLMTask.build_collate_fn(train_args, False),
        batch_size=args.batch_size,
        dtype="float32",
        num_workers=args.num_workers,
        allow_variable_data_keys=True,
        ngpu=args.ngpu,
        inference=False,
    )
    rows, speech_pool, text_pool, skipped = measure(model, loader, device)
    if not rows:
        raise RuntimeError(f"no usable utterance in {data} (skipped: {skipped})")
    sim, r1, r5 = retrieval(speech_pool, text_pool)
    summary = dict(
        n_utts=len(rows),
        n_skipped=len(skipped),
        ot_cost=float(np.mean([r["ot_cost"] for r in rows])),
        matched_cos=float(np.mean([r["matched_cos"] for r in rows])),
        retrieval_r1=r1,
        retrieval_r5=r5,
        chance_r1=1.0 / len(rows),
        speech_norm=float(np.mean([r["speech_norm"] for r in rows])),
        text_norm=float(np.mean([r["text_norm"] for r in rows])),
        ot_cost_fn=model.ot_conf["cost"],
        ot_options=ot_options,
    )
    langs = {}
    if (data / "utt2lang").exists():
        for line in (data / "utt2lang").read_text(encoding="utf-8").splitlines():
            if line.strip():
                k, _, v = line.partition(" ")
                langs[k] = v.strip()
    per_lang = {}
    for r in rows:
        per_lang.setdefault(langs.get(r["utt_id"], "-"), []).append(r)
    per_lang = {
        lang: dict(
            n_utts=len(rs),
            ot_cost=float(np.mean([r["ot_cost"] for r in rs])),
            matched_cos=float(np.mean([r["matched_cos"] for r in rs])),
        )
        for lang, rs in sorted(per_lang.items())
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "modality_gap.json").write_text(
        json.dumps(
            dict(summary=summary, per_lang=per_lang, skipped=skipped, utterances=rows), indent=1
        ) + "\n"
    )
    md = [
        f"# Modality gap: {data}",
        "",
        f"model: `{args.slm_model_file}`",
        "",
        "| metric | value |",
        "|---|---|",
        f"| utterances | {len(rows)} (skipped {len(skipped)}) |",
        f"| mean OT cost ({summary['ot_cost_fn']}) | {summary['ot_cost']:.4f} |",
        f"| mean matched-pair cosine | {summary['matched_cos']:.4f} |",
        f"| speech-to-text retrieval R@1 | {r1:.4f} (chance {summary['chance_r1']:.4f}) |",
        f"| speech-to-text retrieval R@5 | {r5:.4f} |",
        f"| mean norm of speech / transcript embeddings | {summary['speech_norm']:.3f} / "
        f"{summary['text_norm']:.3f} |",
        "",
    ]
    if len(per_lang) > 1:
        md += ["| language | utterances | OT cost | matched cosine |", "|---|---|---|---|"]
        md += [
            f"| {lang} | {v['n_utts']} | {v['ot_cost']:.4f} | {v['matched_cos']:.4f} |"
            for lang, v in per_lang.items()
        ]
        md.append("")
    (out / "modality_gap.md").write_text("\n".join(md))
    plot(out / "modality_gap.png", rows, sim)
    print("\n".join(md))


if __name__ == "__main__":
    main()
