#!/usr/bin/env python3
"""The OTReg tables of docs/experiments.md from the runs of local/run_otreg_experiment.sh
(every number there comes from this command)::

    python local/summarize_otreg_experiment.py --exp otreg/exp [--ref base --ref ctc] \\
        [--ref base_untrainedlm:otreg_untrainedlm] [--systems base otreg phase1 ...] \\
        [--plot cer.png] [--curves curves.png] [--gap_plot gap.png] [--out summary.md]

Runs are the directories ``slm_otreg_<system>_seed<k>``; the phase-1 models
``slm_otreg_phase1[_untrainedlm]_seed<k>`` are the systems ``phase1[_untrainedlm]`` of the
modality-gap table. Printed (markdown):

- CER (%) of every test set, mean ± sd over seeds (n - 1), and n;
- the syllable error rate (%) of the same transcripts (``espnet_otreg.data.pinyin``): the
  CER of their toneless pinyin, so that a homophone of the reference, which the speech
  cannot tell apart, is no error; CER minus SER is the share left to the language model;
- the shift penalty: each shifted set's CER minus the in-domain ``test`` CER, per seed,
  mean ± sd (the same sentences or voices, so it is paired by utterance);
- for each ``--ref`` system, every other system (or those named after it,
  ``REF:SYS,SYS``) minus it, paired by seed: mean ± sd,
  paired t and two-sided p (df = n - 1), and the difference pooled over seeds with a
  95 % utterance-level bootstrap interval (``espnet_otreg.recipe.seeds``); then the
  same for the shift penalty (does a system lose less on a shifted set?);
- the modality gap (``espnet_otreg.bin.modality_gap``, one OT setting for every
  model): matched cosine, R@1, R@5 and OT cost per set, mean over seeds;
- phase 1 (the LM frozen, only the projector trained): validation token accuracy per
  epoch of each phase-1 model, mean ± sd over seeds (does the frozen LM read the
  projected speech?);
- the last validation epoch: token accuracy, CE and OT loss, ``ot_ce_ratio``.

``--plot``: CER per set and system, seeds as points. ``--curves``: validation
accuracy per epoch (phase 2), mean and range over seeds. ``--gap_plot``: matched
cosine and R@1 against CER per set.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_otreg.data import pinyin
from espnet_otreg.recipe.info import RecipeInfo
from espnet_otreg.recipe.seeds import bootstrap_diff, mean_std, paired_t
from espnet_otreg.recipe.trainlog import run_curve

RUN = re.compile(r"^slm_otreg_(?P<name>.+)_seed(?P<seed>\d+)$")
RECIPE = RecipeInfo.load(Path(__file__).resolve().parents[1])
SETS = ["test", "test_acoustic", "test_everyday", "test_everyday_acoustic",
        "test_dialogue", "test_dialogue_acoustic"]
GAP = ("matched_cos", "retrieval_r1", "retrieval_r5", "ot_cost", "speech_norm", "text_norm")
PER_UTT = re.compile(r"^(\S+)\t\S+\terr=(\d+)/(\d+)$")


def per_utt(run: Path, dset: str) -> Optional[Dict[str, tuple]]:
    """``{utt: (errors, n_ref, ref, hyp)}`` of a run's first decoding dir (stage 13's
    per_utt.txt: a header line per utterance, then its normalised REF and HYP)."""
    files = sorted(run.glob(f"*/{dset}/score/per_utt.txt"))
    if not files:
        return None
    out, utt = {}, None
    for line in files[0].read_text(encoding="utf-8").splitlines():
        m = PER_UTT.match(line)
        if m:
            utt = m.group(1)
            out[utt] = [int(m.group(2)), int(m.group(3)), "", ""]
        elif utt and line.startswith(("  REF: ", "  HYP: ")):
            out[utt][2 if line[2] == "R" else 3] = line[7:]
    return {u: tuple(v) for u, v in out.items()}


def per_utt_errors(run: Path, dset: str) -> Optional[Dict[str, tuple]]:
    """``{utt: (errors, n_ref)}``, for the bootstrap over utterances."""
    utts = per_utt(run, dset)
    return None if utts is None else {u: v[:2] for u, v in utts.items()}


def syllable_error_rate(run: Path, dset: str) -> Optional[float]:
    """SER (%) of a run's transcripts of ``dset``: a homophone of the reference is no error."""
    utts = per_utt(run, dset)
    if not utts:
        return None
    return pinyin.syllable_error_rate((u, v[2], v[3]) for u, v in utts.items())


def modality_gap(run: Path, dset: str) -> Optional[dict]:
    f = run / "modality_gap" / dset / "modality_gap.json"
    return json.loads(f.read_text())["summary"] if f.is_file() else None


def collect(exp: Path, sets: Sequence[str]) -> Dict[str, Dict[int, dict]]:
    runs: Dict[str, Dict[int, dict]] = defaultdict(dict)
    for d in sorted(exp.glob("slm_otreg_*_seed*")):
        m = RUN.match(d.name)
        if not m or not d.is_dir():
            continue
        name = m.group("name")
        scores = {}
        for s in sets:  # a set not scored (phase 1, a cut run) is left out
            one = RECIPE.read_scores(d, [s])
            if one is not None:
                scores[s] = one[s]
        runs[name][int(m.group("seed"))] = dict(
            dir=d, scores=scores, curve=run_curve(d),
            gap={s: modality_gap(d, s) for s in sets},
            ser={s: syllable_error_rate(d, s) for s in scores},
        )
    return runs


def fmt(m: float, sd: float = math.nan, digits: int = 2) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "–"
    out = f"{m:.{digits}f}"
    return out if math.isnan(sd) else f"{out} ± {sd:.{digits}f}"


def fmt_t(diffs: List[float]) -> str:
    t, p = paired_t(diffs)
    if t is None:
        return "–"
    return f"{t:+.2f} ({p:.2f})" if math.isfinite(t) else f"{'+' if t > 0 else '-'}inf (0)"


def scored(runs, name, sets) -> Dict[int, Dict[str, float]]:
    return {k: r["scores"] for k, r in runs.get(name, {}).items()
            if all(s in r["scores"] for s in sets)}


def cer_table(runs, names, sets, key: str = "scores") -> List[str]:
    """Mean ± sd over seeds of each set's CER (``key="scores"``) or SER (``"ser"``)."""
    lines = ["| system | " + " | ".join(sets) + " | seeds |",
             "|---|" + "---:|" * (len(sets) + 1)]
    for name in names:
        rs = runs[name]
        cells = [fmt(*mean_std([r[key][s] for r in rs.values() if r[key].get(s) is not None])[:2])
                 for s in sets]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(scored(runs, name, sets))} |")
    return lines


def penalty(scores: Dict[str, float], s: str, base_set: str) -> float:
    return scores[s] - scores[base_set]


def penalty_table(runs, names, shifted, base_set) -> List[str]:
    lines = ["| system | " + " | ".join(f"{s} − {base_set}" for s in shifted) + " |",
             "|---|" + "---:|" * len(shifted)]
    for name in names:
        sc = scored(runs, name, [base_set, *shifted])
        cells = [fmt(*mean_std([penalty(v, s, base_set) for v in sc.values()])[:2]) for s in shifted]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def paired_table(runs, names, ref, sets, n_boot) -> List[str]:
    lines = [f"| system − {ref} | set | mean ± sd over seeds | t (p) | seeds | "
             "pooled, 95 % bootstrap over utterances |", "|---|---|---:|---:|---:|---:|"]
    for name in names:
        if name == ref:
            continue
        for s in sets:
            a, b = scored(runs, name, [s]), scored(runs, ref, [s])
            seeds = sorted(set(a) & set(b))
            if not seeds:
                continue
            diffs = [a[k][s] - b[k][s] for k in seeds]
            boot = "–"
            ea = [per_utt_errors(runs[name][k]["dir"], s) for k in seeds]
            eb = [per_utt_errors(runs[ref][k]["dir"], s) for k in seeds]
            if all(ea) and all(eb):
                utts = sorted(set.intersection(*(set(e) for e in ea + eb)))
                if utts:
                    r = bootstrap_diff([[e[u][0] for u in utts] for e in ea],
                                       [[e[u][0] for u in utts] for e in eb],
                                       [ea[0][u][1] for u in utts], n_boot=n_boot)
                    boot = f"{r['diff']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]"
            lines.append(f"| {name} | {s} | {fmt(*mean_std(diffs)[:2])} | {fmt_t(diffs)} | "
                         f"{len(seeds)} | {boot} |")
    return lines


def paired_penalty_table(runs, names, ref, shifted, base_set) -> List[str]:
    lines = [f"| system − {ref} | shift penalty of | mean ± sd over seeds | t (p) | seeds |",
             "|---|---|---:|---:|---:|"]
    for name in names:
        if name == ref:
            continue
        a = scored(runs, name, [base_set, *shifted])
        b = scored(runs, ref, [base_set, *shifted])
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        for s in shifted:
            diffs = [penalty(a[k], s, base_set) - penalty(b[k], s, base_set) for k in seeds]
            lines.append(f"| {name} | {s} | {fmt(*mean_std(diffs)[:2])} | {fmt_t(diffs)} | {len(seeds)} |")
    return lines


def gap_table(runs, names, sets) -> List[str]:
    lines = ["| system | set | matched cosine | R@1 | R@5 | OT cost | speech norm | text norm | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        for s in sets:
            g = [r["gap"][s] for r in runs[name].values() if r["gap"].get(s)]
            if not g:
                continue
            # reports written before the norms were measured have none ("–")
            cells = [fmt(*mean_std([x[k] for x in g if k in x])[:2], digits=3) for k in GAP]
            lines.append(f"| {name} | {s} | " + " | ".join(cells) + f" | {len(g)} |")
    return lines


def last_epoch_table(runs, names) -> List[str]:
    keys = ("acc", "loss_ce", "loss_ot", "ot_ce_ratio", "loss_ctc")
    lines = ["| system | epochs | " + " | ".join(f"valid {k}" for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for name in names:
        curves = [r["curve"] for r in runs[name].values() if r["curve"]]
        if not curves:
            continue
        cells = [fmt(*mean_std([c[-1][k] for c in curves if k in c[-1]])[:2], digits=3) for k in keys]
        lines.append(f"| {name} | {max(len(c) for c in curves)} | " + " | ".join(cells) + " |")
    return lines


def phase1_table(runs, names) -> List[str]:
    curves = {n: [r["curve"] for r in runs[n].values() if r["curve"]] for n in names}
    curves = {n: c for n, c in curves.items() if c}
    if not curves:
        return []
    epochs = max(len(c) for cs in curves.values() for c in cs)
    lines = ["| phase-1 model | " + " | ".join(f"epoch {e}" for e in range(1, epochs + 1))
             + " | seeds |", "|---|" + "---:|" * (epochs + 1)]
    for name, cs in curves.items():
        cells = [fmt(*mean_std([c[e]["acc"] for c in cs if len(c) > e and "acc" in c[e]])[:2],
                     digits=3) for e in range(epochs)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(cs)} |")
    return lines


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(n: int) -> list:
    """One distinct colour per system: the default cycle repeats after ten."""
    if n <= 10:
        return [f"C{j}" for j in range(n)]
    import matplotlib

    return [matplotlib.colormaps["tab20"](j % 20) for j in range(n)]


def plot_cer(runs, names, sets, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(sets)), 4.2))
    width = 0.8 / max(1, len(names))
    colors = _colors(len(names))
    for j, name in enumerate(names):
        for i, s in enumerate(sets):
            vals = [r["scores"][s] for r in runs[name].values() if s in r["scores"]]
            if not vals:
                continue
            x = i + (j - (len(names) - 1) / 2) * width
            ax.bar(x, sum(vals) / len(vals), width, color=colors[j], alpha=0.6,
                   label=name if i == 0 else None)
            ax.plot([x] * len(vals), vals, "k.", ms=4)
    ax.set_xticks(range(len(sets)), [s.replace("test_", "") for s in sets], rotation=20)
    ax.set(ylabel="CER (%)", title="OTReg experiment: CER per test set (bars: mean; dots: seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # never over a bar
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(runs, names, path: Path, key: str = "acc") -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4))
    colors = _colors(len(names))
    for j, name in enumerate(names):
        curves = [[e.get(key, math.nan) for e in r["curve"]] for r in runs[name].values() if r["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        ep = list(range(1, n + 1))
        cols = list(zip(*(c[:n] for c in curves)))
        ax.plot(ep, [sum(c) / len(c) for c in cols], color=colors[j], label=name)
        ax.fill_between(ep, [min(c) for c in cols], [max(c) for c in cols], color=colors[j], alpha=0.15)
    ax.set(xlabel="epoch", ylabel=f"valid {key}", title=f"validation {key} (mean, range over seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # never over a curve
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_gap(runs, names, sets, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = _colors(len(names))
    for ax, key in zip(axes, ("matched_cos", "retrieval_r1")):
        for j, name in enumerate(names):
            pts = [(r["gap"][s][key], r["scores"][s]) for r in runs[name].values() for s in sets
                   if r["gap"].get(s) and s in r["scores"]]
            if pts:
                ax.scatter(*zip(*pts), color=colors[j], s=14, label=name)
        ax.set(xlabel=key.replace("_", " "), ylabel="CER (%)", title=f"CER against {key}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_ref(spec: str) -> Tuple[str, Optional[List[str]]]:
    """``REF`` (every system minus REF) or ``REF:SYS,SYS`` (only those systems)."""
    ref, sep, only = spec.partition(":")
    systems = [x for x in only.split(",") if x] if sep else None
    if not ref or (sep and not systems):
        raise SystemExit(f"summarize_otreg_experiment.py: --ref {spec!r}: want REF or REF:SYS,SYS")
    return ref, systems


def summarize(exp: Path, sets: Sequence[str], refs: Sequence[str], n_boot: int,
              only: Optional[Sequence[str]] = None) -> tuple:
    runs = collect(exp, sets)
    if only is not None:  # the runs of one study out of an exp dir that holds several
        unknown = sorted(set(only) - set(runs))
        if unknown:
            raise SystemExit(f"summarize_otreg_experiment.py: --systems {' '.join(unknown)}: "
                             f"no run in {exp} (there: {' '.join(sorted(runs))})")
        runs = {n: r for n, r in runs.items() if n in only}
    refs = [parse_ref(r) for r in refs]
    phase1s = sorted(n for n in runs if n == "phase1" or n.startswith("phase1_"))
    systems = [n for n in runs if n not in phase1s]
    # each system once, references first (a reference may also be otreg itself)
    order = [n for n in dict.fromkeys((*(r for r, _ in refs), "otreg", "otreg_cos"))
             if n in systems]
    names = order + sorted(n for n in systems if n not in order)
    base_set, shifted = sets[0], list(sets[1:])
    md = [f"## OTReg experiment ({exp})", "", "CER (%), mean ± sd over seeds:", "",
          *cer_table(runs, names, sets), "",
          "Syllable error rate (%) of the same transcripts (toneless pinyin of reference and "
          "hypothesis: a homophone is no error), mean ± sd over seeds:", "",
          *cer_table(runs, names, sets, key="ser"), "",
          f"Shift penalty (CER of the shifted set minus {base_set}, per seed), mean ± sd:", "",
          *penalty_table(runs, names, shifted, base_set), ""]
    for ref, only in refs:
        if ref not in runs:
            continue
        paired = names if only is None else [n for n in names if n in only]
        md += [f"Paired by seed, minus {ref} (CER points; t with df = seeds - 1):", "",
               *paired_table(runs, paired, ref, sets, n_boot), "",
               f"Shift penalty, minus {ref}'s (negative: loses less on the shifted set):", "",
               *paired_penalty_table(runs, paired, ref, shifted, base_set), ""]
    gap_names = [n for n in ("phase1", *names) if n in runs] + [n for n in phase1s if n != "phase1"]
    md += ["Modality gap (one OT setting for every model; mean ± sd over seeds):", "",
           *gap_table(runs, gap_names, sets), ""]
    p1 = phase1_table(runs, phase1s)
    if p1:
        md += ["Phase 1 (LM frozen, projector only): validation token accuracy per epoch, "
               "mean ± sd over seeds:", "", *p1, ""]
    md += ["Last validation epoch (phase 2), mean ± sd over seeds:", "",
           *last_epoch_table(runs, names), ""]
    return "\n".join(md), runs, names


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--sets", nargs="+", default=SETS, help="first: the in-domain set")
    p.add_argument("--ref", action="append", default=None,
                   help="a reference system: every other system minus it, paired by seed; "
                        "REF:SYS,SYS pairs only those systems with it (default: base, ctc)")
    p.add_argument("--systems", nargs="+", default=None,
                   help="only these systems and phase-1 models (default: every run in --exp)")
    p.add_argument("--n_boot", type=int, default=2000)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--curves", type=Path, default=None)
    p.add_argument("--gap_plot", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    refs = args.ref or ["base", "ctc"]
    md, runs, names = summarize(args.exp, args.sets, refs, args.n_boot, args.systems)
    if not names:
        raise SystemExit(f"summarize_otreg_experiment.py: no run slm_otreg_<system>_seed<k> in {args.exp}")
    if args.plot:
        plot_cer(runs, names, args.sets, args.plot)
    if args.curves:
        plot_curves(runs, names, args.curves)
    if args.gap_plot:
        plot_gap(runs, names, args.sets, args.gap_plot)
    if args.out:
        args.out.write_text(md + "\n", encoding="utf-8")
    print(md)
    return md


if __name__ == "__main__":
    main()
