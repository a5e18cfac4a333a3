#!/usr/bin/env python3
"""Write RESULTS.md from what stage 13 scored under ``--expdir`` (nothing else).

For every system (a config of conf/ or conf/tuning/, or any ``<expdir>/asr_*`` dir)
and decoding setup: CER on dev and test read from
``<expdir>/asr_<tag>/<decode config>_asr_model_<model>/<set>/score_cer/result.txt``, with the
config, the model file and the decoding config. A system that was not trained or
scored shows "-". Published numbers are listed in a separate table, marked as such.

    python local/make_results.py --expdir exp --out RESULTS.md
    python local/make_results.py --expdir exp --out exp/asr_x/RESULTS.md --only exp/asr_x
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from espnet_otreg.data.scoring import parse_result
from espnet_otreg.recipe.results import metric_line, write_results

SETS = ("dev", "test")
SYSTEMS = [  # (tag, what it is)
    ("train_asr_ctc_conformer", "Conformer-CTC baseline"),
    ("train_asr_gmot", "GM-OT (alpha 0.02)"),
    ("train_asr_ot_cakt", "OT-CAKT (alpha 0, rho 0)"),
    ("train_asr_tot_cakt", "TOT-CAKT (alpha 0, rho > 0)"),
    ("train_asr_gmot_alpha0.1", "GM-OT alpha 0.1"),
    ("train_asr_gmot_alpha0.5", "GM-OT alpha 0.5"),
]
PUBLISHED = [  # from the papers / ESPnet's egs2/aishell RESULTS (not produced here)
    ("GM-OT paper: baseline Conformer-CTC", "-", "5.76"),
    ("GM-OT paper: GM-OT", "-", "4.04"),
    ("OT-CAKT (arXiv 2309.13650), CTC greedy", "3.96", "4.27"),
    ("Sinkhorn-attention CMKT (arXiv 2309.16093)", "3.64", "3.94"),
    ("ESPnet egs2/aishell CTC Conformer e15, greedy", "5.8", "6.3"),
    ("ESPnet egs2/aishell CTC E-Branchformer, greedy", "5.4", "6.0"),
    ("ESPnet egs2/aishell Conformer CTC/attention, beam 10", "4.3", "4.6"),
]


def decode_dirs(exp: Path):
    """(decode name, model file, {set: numbers}) for each decode dir of ``exp``."""
    out = []
    for d in sorted(exp.glob("*_asr_model_*")):  # asr.sh: <decode config>_asr_model_<model>
        dec, model = d.name.split("_asr_model_", 1)
        model += ".pth"
        nums = {}
        for s in SETS:
            r = d / s / "score_cer" / "result.txt"
            if r.is_file():
                nums[s] = parse_result(r)
        out.append((dec, model, nums))
    return out


def rows_for(tag: str, what: str, expdir: Path, conf_dir: Path, dataset: str = "AISHELL-1",
             dataset_id: str = "aishell"):
    exp = expdir / f"asr_{tag}"
    conf = next((str(p) for p in (conf_dir / f"{tag}.yaml", conf_dir / "tuning" / f"{tag}.yaml",
                                  conf_dir / "mini" / f"{tag}.yaml") if p.is_file()),
                str(exp / "config.yaml"))
    if (exp / "config.yaml").is_file():  # the config it was trained with
        import yaml

        conf = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8")).get("config") or conf
    found = decode_dirs(exp) if exp.is_dir() else []
    if not found:
        return [(what, conf, "-", "-", "-", "-")], [], []
    rows, details, metrics = [], [], []
    for dec, model, nums in found:
        cer = [f"{nums[s].get('cer', nums[s]['err']):.2f}" if s in nums else "-" for s in SETS]
        rows.append((what, conf, f"{dec}.yaml",
                     f"{exp}/{model}", *cer))
        for s in SETS:
            if s in nums:
                n = nums[s]
                metrics.append(metric_line(
                    system=what, dataset=dataset, dataset_id=dataset_id, split=s, metric="cer",
                    value=n.get("cer", n["err"]), decoding=dec,
                    source=str(exp / f"{dec}_asr_model_{model[:-4]}" / s / "score_cer" / "result.txt")))
                details.append(f"|{exp.name}/{dec}/{s}|{n['n_snt']}|{n['n_wrd']}|{n['corr']:.1f}|"
                               f"{n['sub']:.1f}|{n['del']:.1f}|{n['ins']:.1f}|{n['err']:.1f}|"
                               f"{n['snt_err']:.1f}|")
    return rows, details, metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expdir", type=Path, default=Path("exp"))
    p.add_argument("--conf_dir", type=Path, default=Path("conf"))
    p.add_argument("--out", type=Path, default=Path("RESULTS.md"))
    p.add_argument("--only", type=Path, default=None, help="one exp dir only")
    p.add_argument("--dataset_name", default="AISHELL-1",
                   help="the data set the numbers are on (model card metrics)")
    p.add_argument("--dataset_id", default="aishell", help="its Hub id ('': none)")
    a = p.parse_args()

    systems = list(SYSTEMS)
    known = {t for t, _ in systems}
    for exp in sorted(a.expdir.glob("asr_*")):
        tag = exp.name[len("asr_"):]
        if tag not in known and not tag.startswith("stats"):
            systems.append((tag, tag))
    if a.only is not None:
        systems = [(t, w) for t, w in systems if f"asr_{t}" == a.only.name]

    rows, details, metrics = [], [], []
    for tag, what in systems:
        r, d, m = rows_for(tag, what, a.expdir, a.conf_dir, a.dataset_name, a.dataset_id)
        rows += r
        details += d
        metrics += m
    intro = [
        f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC from "
        f"`{a.expdir}`. \"-\": not trained or not scored yet. Scoring: stage 13 "
        "(sclite, or the sclite-compatible Python scorer). Character error rate (%)."]
    lines = [
        "## Ours",
        "",
        "|system|config|decoding|model|dev CER|test CER|",
        "|---|---|---|---|---|---|",
    ]
    lines += ["|" + "|".join(r) + "|" for r in rows]
    if details:
        lines += ["", "### Details (sclite Sum/Avg)", "",
                  "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|", "|---|---|---|---|---|---|---|---|---|"]
        lines += details
    if a.only is None:
        lines += ["", "## Published (from the papers and ESPnet; not produced by this recipe)",
                  "", "|system|dev CER|test CER|", "|---|---|---|"]
        lines += [f"|{s} *(published)*|{d}|{t}|" for s, d, t in PUBLISHED]
    write_results(a.out, title="AISHELL-1, character error rate (%)", intro=intro,
                  sections=lines, metrics=metrics, cwd=Path(__file__).resolve().parent)
    print(f"make_results: {a.out} ({sum(r[-1] != '-' for r in rows)} scored rows)")


if __name__ == "__main__":
    main()
