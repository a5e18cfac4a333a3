#!/usr/bin/env python3
"""The tables of docs/experiments.md from the runs of local/run_tts_experiment.sh and
local/run_tts_ablations.sh (every number there comes from this command):

    python local/summarize_tts_experiment.py --exp tts/exp [--out tts/summary.md]

For each system (a run directory ``asr_sweep_<name>_seed<k>``, grouped over seeds):

- dev/test CER, mean ± sd over seeds (n - 1), from the scored decoding dirs;
- the paired difference to a reference system over the seeds both have (default: the
  GM-OT defaults and the CTC baseline), with the paired t statistic and its two-sided
  p-value (df = n - 1): with 3 seeds, |t| must exceed 4.3 for p < 0.05. A reference's
  table holds the systems trained as long (the same ``_ep<N>`` name suffix, none for
  the recipe's 8 epochs); ``--pair A=B`` adds chosen pairs in one table (e.g. GM-OT
  minus CTC at each training length);
- convergence: the per-epoch validation CER the trainer logged (mean over seeds), and
  the first epoch at which it falls below ``--reach`` % (speed of leaving the blank
  plateau, reported apart from final accuracy);
- the last epoch's validation ``loss_ctc`` and ``loss_ctc_fused`` (teacher forcing
  shows as a fused loss far below the main one), coupling entropy and monotonicity;
- ``--plot curves.png``: the validation CER per epoch of ``--plot_systems``, mean and
  range over seeds, as a picture;
- ``--teachers tts/teachers`` (local/run_teacher_study.sh): each teacher's held-out
  masked accuracy and perplexity next to a unigram model's, and GM-OT with that
  teacher minus ``--teacher_ref`` by seed (``--teacher_system SYSTEM=REF``: a variant
  with its own baseline, e.g. both at 40 epochs); ``--teacher_plot`` draws the
  difference against the teacher's accuracy.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_otreg.bin.sweep import read_scores
from espnet_otreg.recipe.info import RecipeInfo
from espnet_otreg.recipe.seeds import mean_std
from espnet_otreg.recipe.seeds import paired_t as t_test
from espnet_otreg.recipe.trainlog import run_curve

RUN = re.compile(r"^asr_sweep_(?P<name>.+)_seed(?P<seed>\d+)$")
RECIPE = RecipeInfo.load(Path(__file__).resolve().parents[1])  # this recipe's score layout
LENGTH = re.compile(r"_ep(\d+)$")  # the "long" runs of local/run_tts_ablations.sh


def length_tag(name: str) -> str:
    """The training-length suffix of a system name ("" for the config's own length)."""
    m = LENGTH.search(name)
    return m.group(0) if m else ""
def collect(exp: Path, sets: List[str]) -> Dict[str, Dict[int, dict]]:
    runs: Dict[str, Dict[int, dict]] = defaultdict(dict)
    for d in sorted(exp.glob("asr_sweep_*_seed*")):
        m = RUN.match(d.name)
        if not m or not d.is_dir():
            continue
        scores = read_scores(d, sets, RECIPE)
        curve = run_curve(d)
        runs[m.group("name")][int(m.group("seed"))] = dict(scores=scores, curve=curve)
    return runs


def fmt(m, sd=None, digits=2) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    s = f"{m:.{digits}f}"
    return s if sd is None else s + (" ± -" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def mean_sd(values: List[float]):
    return mean_std(values)[:2]


def paired_row(runs, name: str, ref: str, sets: List[str]) -> Optional[List[str]]:
    """Seeds both systems have, then per set: differences, their mean ± sd, t (p)."""
    common = sorted(k for k in runs[name] if runs[name][k]["scores"]
                    and k in runs[ref] and runs[ref][k]["scores"])
    if not common:
        return None
    cells = [" ".join(map(str, common))]
    for s in sets:
        d = [runs[name][k]["scores"][s] - runs[ref][k]["scores"][s] for k in common]
        t, p = t_test(d)
        cells += [" ".join(f"{x:+.2f}" for x in d), fmt(*mean_sd(d)),
                  "-" if t is None else f"{t:+.2f} ({p:.2f})"]
    return cells


def cer_curves(runs, name: str) -> List[List[float]]:
    """Validation CER (%) per epoch of each scored run of a system."""
    return [[100 * e["cer_ctc"] for e in r["curve"] if "cer_ctc" in e]
            for r in runs[name].values() if r["scores"]]


def summarize(exp: Path, sets: List[str], refs: List[str], reach: float,
              names: Optional[List[str]] = None, pairs: Sequence[Tuple[str, str]] = (),
              curve_epochs: Optional[List[int]] = None) -> str:
    runs = collect(exp, sets)
    # systems with at least one scored run (a run still training has no scores yet)
    names = [n for n in (names or sorted(runs))
             if n in runs and any(r["scores"] for r in runs[n].values())]
    lines = ["| system | seeds | " + " | ".join(f"{s} CER (mean ± sd)" for s in sets)
             + f" | epoch valid CER < {reach:g} % | last epoch valid CER | valid loss_ctc / loss_ctc_fused"
             " | coupling entropy / monotonic |",
             "|---|---|" + "---:|" * len(sets) + "---:|---:|---:|---:|"]
    for name in names:
        by_seed = runs[name]
        done = {k: r for k, r in by_seed.items() if r["scores"]}
        cells = [name, " ".join(str(k) for k in sorted(done)) or "-"]
        for s in sets:
            cells.append(fmt(*mean_sd([r["scores"][s] for r in done.values()])))
        reached, last, ctc, fused, ent, mono = [], [], [], [], [], []
        for r in done.values():
            cer = [100 * e["cer_ctc"] for e in r["curve"] if "cer_ctc" in e]
            hit = [i + 1 for i, c in enumerate(cer) if c < reach]
            reached.append(hit[0] if hit else math.nan)
            if cer:
                last.append(cer[-1])
            e = r["curve"][-1] if r["curve"] else {}
            ctc += [e["loss_ctc"]] if "loss_ctc" in e else []
            fused += [e["loss_ctc_fused"]] if "loss_ctc_fused" in e else []
            ent += [e["coupling_entropy"]] if "coupling_entropy" in e else []
            mono += [e["coupling_monotonic"]] if "coupling_monotonic" in e else []
        cells.append(fmt(*mean_sd(reached), digits=1))
        cells.append(fmt(*mean_sd(last)))
        cells.append(f"{fmt(mean_sd(ctc)[0])} / {fmt(mean_sd(fused)[0])}")
        cells.append(f"{fmt(mean_sd(ent)[0])} / {fmt(mean_sd(mono)[0])}")
        lines.append("| " + " | ".join(cells) + " |")
    out = ["### CER and convergence", "", *lines, ""]

    head = " | ".join(f"{s}: diff per seed | {s}: mean ± sd | {s}: t (p)" for s in sets)
    rule = "---|---:|---:|" * len(sets)
    for ref in refs:
        if ref not in runs:
            continue
        out += [f"### Paired by seed: system minus `{ref}`", "",
                f"| system | seeds | {head} |", f"|---|---|{rule}"]
        for name in names:
            same_length = length_tag(name) == length_tag(ref)
            cells = paired_row(runs, name, ref, sets) if name != ref and same_length else None
            if cells:
                out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    rows = [(a, b, paired_row(runs, a, b, sets)) for a, b in pairs if a in runs and b in runs]
    if any(cells for _, _, cells in rows):
        out += ["### Paired by seed: chosen pairs", "",
                f"| system | minus | seeds | {head} |", f"|---|---|---|{rule}"]
        out += [f"| {a} | {b} | " + " | ".join(cells) + " |" for a, b, cells in rows if cells]
        out.append("")

    out += ["### Validation CER per epoch (%, mean over seeds)", ""]
    width = max((len(r["curve"]) for n in names for r in runs[n].values()), default=0)
    epochs = [e for e in (curve_epochs or range(1, width + 1)) if 1 <= e <= width]
    out += ["| system | " + " | ".join(map(str, epochs)) + " |", "|---|" + "---:|" * len(epochs)]
    for name in names:
        curves = cer_curves(runs, name)
        cells = []
        for e in epochs:
            vals = [c[e - 1] for c in curves if len(c) >= e]
            cells.append(f"{statistics.fmean(vals):.1f}" if vals else "-")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot_curves(exp: Path, names: List[str], path: Path, sets: Sequence[str] = ("dev",)) -> None:
    """Validation CER per epoch of each system: the mean over seeds, shaded between the
    lowest and highest seed (only epochs that every seed reached)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = collect(exp, list(sets))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        curves = cer_curves(runs, name) if name in runs else []
        if not curves:
            raise ValueError(f"no scored runs of {name!r} under {exp}")
        n = min(len(c) for c in curves)
        a = np.array([c[:n] for c in curves])
        x = np.arange(1, n + 1)
        (line,) = ax.plot(x, a.mean(0), label=f"{name} ({len(curves)} seeds)")
        ax.fill_between(x, a.min(0), a.max(0), color=line.get_color(), alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation CER (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def teachers(teachers_dir: Path) -> Dict[str, dict]:
    """``{name: pretrain.json}`` of the teachers under ``teachers_dir`` (local/
    run_teacher_study.sh), weakest (by held-out masked accuracy) first."""
    import json

    found = {d.name: json.loads((d / "pretrain.json").read_text(encoding="utf-8"))
             for d in sorted(teachers_dir.iterdir()) if (d / "pretrain.json").is_file()}
    return dict(sorted(found.items(), key=lambda kv: kv[1]["final"]["mlm_acc"]))


#: The GM-OT runs of a teacher when --teacher_system is not given ({} = its name).
TEACHER_SYSTEM = "tts_gmot_teacher_{}_ep16"


def teacher_section(exp: Path, teachers_dir: Path, systems: List[Tuple[str, str]],
                    sets: List[str]) -> Tuple[str, List[dict]]:
    """The teachers' strength and, for each, GM-OT with it minus a baseline by seed.
    Each of ``systems`` is ``(variant, baseline)``: the variant names a teacher's runs
    (e.g. with and without the fused CTC, 16 or 40 epochs) with ``{}`` for the
    teacher, paired with the baseline's runs of the same seeds; rows by variant, then
    teacher."""
    runs = collect(exp, sets)
    out = ["### Teachers (held-out masked characters)", "",
           "| teacher | training sentences | vocabulary | layers x hidden | epochs | "
           "masked accuracy | perplexity | unigram accuracy | unigram perplexity |",
           "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    found = teachers(teachers_dir)
    for name, t in found.items():
        f = t["final"]
        out.append(f"| {name} | {t['train_sentences']} | {t['vocab_size']} | "
                   f"{t['num_layers']} x {t['hidden_size']} | {t['epochs']} | "
                   f"{100 * f['mlm_acc']:.1f} % | {f['mlm_ppl']:.1f} | "
                   f"{100 * f['unigram_acc']:.1f} % | {f['unigram_ppl']:.1f} |")
    refs = list(dict.fromkeys(ref for _, ref in systems))
    title = f"`{refs[0]}`" if len(refs) == 1 else "its baseline"
    head = " | ".join(f"{s}: diff per seed | {s}: mean ± sd | {s}: t (p)" for s in sets)
    out += ["", f"### GM-OT with each teacher minus {title}, by seed", "",
            f"| teacher | system | minus | seeds | {head} |",
            "|---|---|---|---|" + "---|---:|---:|" * len(sets)]
    points = []
    for system, ref in systems:
        for name, t in found.items():
            sysname = system.format(name)
            cells = paired_row(runs, sysname, ref, sets) if sysname in runs and ref in runs else None
            if cells:
                out.append(f"| {name} | {sysname} | {ref} | " + " | ".join(cells) + " |")
                common = sorted(k for k in runs[sysname] if runs[sysname][k]["scores"]
                                and k in runs[ref] and runs[ref][k]["scores"])
                points.append(dict(teacher=name, series=system, ref=ref,
                                   acc=t["final"]["mlm_acc"], diffs=[
                    runs[sysname][k]["scores"][sets[-1]] - runs[ref][k]["scores"][sets[-1]]
                    for k in common]))
    return "\n".join(out) + "\n", points


def teacher_systems(specs: Optional[List[str]], default_ref: str) -> List[Tuple[str, str]]:
    """``--teacher_system`` values, ``SYSTEM`` or ``SYSTEM=REF``, as (system, baseline)."""
    pairs = []
    for spec in specs or [TEACHER_SYSTEM]:
        system, sep, ref = spec.partition("=")
        if "{}" not in system or (sep and not ref):
            raise ValueError(f"--teacher_system takes SYSTEM or SYSTEM=REF with {{}} for the "
                             f"teacher in SYSTEM, got {spec!r}")
        pairs.append((system, ref or default_ref))
    return pairs


def plot_teachers(points: List[dict], path: Path, set_name: str) -> None:
    """GM-OT's CER minus the baseline's against the teacher's held-out masked accuracy:
    each seed a dot, the mean with its sd as a bar, one colour per variant (series)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(pt["series"] for pt in points))
    refs = list(dict.fromkeys(pt["ref"] for pt in points))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for pt in points:
        i = series.index(pt["series"])
        x = 100 * pt["acc"] + 0.8 * (i - (len(series) - 1) / 2)  # variants side by side
        ax.scatter([x] * len(pt["diffs"]), pt["diffs"], color="0.6", s=14, zorder=2)
        m, sd, n = mean_std(pt["diffs"])
        label = pt["series"].replace("{}", "*") + (f" - {pt['ref']}" if len(refs) > 1 else "")
        ax.errorbar([x], [m], yerr=[0 if n < 2 else sd], fmt="o", color=f"C{i}", capsize=4,
                    zorder=3, label=label if len(series) > 1 else None)
        # variants alternate sides, so labels at one teacher do not overlap
        ax.annotate(f"{pt['teacher']} (n={n})", (x, m), textcoords="offset points",
                    xytext=(6, 4) if i % 2 == 0 else (-6, 4), ha="left" if i % 2 == 0 else "right",
                    fontsize=8)
    if len(series) > 1:
        handles, labels = ax.get_legend_handles_labels()
        keep = dict(zip(labels, handles))  # one entry per variant
        # below the axes: with four teachers and several variants none of the plot is free
        ax.legend(keep.values(), keep.keys(), fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.15), ncol=1)
    ax.axhline(0, color="k", lw=0.8)
    ax.margins(x=0.15)  # room for the labels of the outer teachers
    ax.set_xlabel("teacher: held-out masked-character accuracy (%)")
    minus = refs[0] if len(refs) == 1 else "its baseline"
    ax.set_ylabel(f"{set_name} CER, GM-OT minus {minus} (points)")
    ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")  # "tight" keeps the legend below
    plt.close(fig)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, default=Path("tts/exp"))
    p.add_argument("--sets", nargs="+", default=["dev", "test"])
    p.add_argument("--ref", nargs="*", default=["tts_gmot", "tts_ctc"],
                   help="systems to pair the others with")
    p.add_argument("--systems", nargs="*", default=None, help="default: every system found")
    p.add_argument("--reach", type=float, default=20.0,
                   help="convergence: first epoch with validation CER below this (%%)")
    p.add_argument("--pair", action="append", default=[], metavar="A=B",
                   help="also pair system A with system B (repeatable)")
    p.add_argument("--curve_epochs", type=int, nargs="*", default=None,
                   help="epochs shown in the per-epoch table (default: all)")
    p.add_argument("--plot", type=Path, default=None, help="PNG of the validation curves")
    p.add_argument("--plot_systems", nargs="*", default=["tts_ctc", "tts_gmot"])
    p.add_argument("--teachers", type=Path, default=None,
                   help="the teacher-strength study (local/run_teacher_study.sh): its "
                        "teachers' dir, e.g. tts/teachers")
    p.add_argument("--teacher_system", action="append", default=None,
                   help="the GM-OT runs of a teacher, {} = its name, optionally =BASELINE "
                        "(default --teacher_ref); repeatable, one per variant (default: "
                        f"{TEACHER_SYSTEM})")
    p.add_argument("--teacher_ref", default="tts_ctc_ep16", help="paired with this system")
    p.add_argument("--teacher_plot", type=Path, default=None,
                   help="PNG: the CER difference against the teacher's strength")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    pairs = []
    for pair in args.pair:
        a, sep, b = pair.partition("=")
        if not sep or not a or not b:
            p.error(f"--pair takes A=B (two system names), got {pair!r}")
        pairs.append((a, b))
    md = summarize(args.exp, args.sets, args.ref, args.reach, args.systems, pairs,
                   args.curve_epochs)
    if args.teachers:
        try:
            systems = teacher_systems(args.teacher_system, args.teacher_ref)
        except ValueError as e:
            p.error(str(e))
        section, points = teacher_section(args.exp, args.teachers, systems, args.sets)
        md += "\n" + section
        if args.teacher_plot:
            plot_teachers(points, args.teacher_plot, args.sets[-1])
    if args.plot:
        plot_curves(args.exp, args.plot_systems, args.plot, args.sets)
    if args.out:
        args.out.write_text(md, encoding="utf-8")
    print(md)
    return md


if __name__ == "__main__":
    main()
