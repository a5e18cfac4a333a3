#!/usr/bin/env python3
"""Write RESULTS.md from what the recipe produced under exp/ (stage 13).

Reads, for every system directory ``exp/slm_<tag>``:

- ``decode_*/<test set>/score/scores.json`` (local/score.py): per-language WER/CER,
  their mean (``avg``) and the pooled rate;
- ``modality_gap/<test set>/modality_gap.json`` (espnet_otreg.bin.modality_gap).

Systems are named by their phase-2 config: ``*base*`` -> base SLM, ``*ctc*`` -> base +
CTC, ``*otreg*`` -> OTReg; anything else under its tag. The three paper systems always
get a row; a system that was not trained/decoded shows "-". The paper's own numbers
are in separate columns marked *published*; nothing here is copied from the paper
into our columns, and every number of ours names the file it came from.
"""

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from espnet_otreg.recipe.results import metric_line, write_results

#: Published (OTReg paper, arXiv 2508.08131, abstract): average WER of OTReg.
#: Its per-language numbers and its baselines' numbers are not reproduced here.
PUBLISHED = {("otreg", "in"): 6.90, ("otreg", "cross"): 13.12}
SYSTEMS = [("base", "base SLM"), ("ctc", "base + CTC"), ("otreg", "OTReg")]


def system_key(tag: str) -> str:
    t = tag.lower()
    for key in ("otreg", "ctc", "base"):
        if key in t:
            return key
    return tag


def collect(exp_dir: Path):
    """{system dir name: {"scores": {test set: (scores, path)}, "gap": {test set: (json, path)}}}"""
    out = {}
    for sysdir in sorted(p for p in exp_dir.glob("slm_*") if p.is_dir()):
        entry = {"scores": {}, "gap": {}}
        for f in sorted(sysdir.glob("decode_*/*/score/scores.json")):
            entry["scores"][f.parent.parent.name] = (json.loads(f.read_text()), f)
        for f in sorted(sysdir.glob("modality_gap/*/modality_gap.json")):
            entry["gap"][f.parent.name] = (json.loads(f.read_text()), f)
        if entry["scores"] or entry["gap"]:
            out[sysdir.name] = entry
    return out


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


def rate_table(results, test_set: str, domain: str, title: str):
    langs = sorted({lg for r in results.values() if test_set in r["scores"]
                    for lg in r["scores"][test_set][0]["langs"]})
    metric = {}
    for r in results.values():
        if test_set in r["scores"]:
            for lg, v in r["scores"][test_set][0]["langs"].items():
                metric[lg] = v["metric"].upper()
    rows, sources = [], []
    head = ["system"] + [f"{lg} ({metric[lg]})" for lg in langs] + ["avg", "pooled", "published avg"]
    rows.append("| " + " | ".join(head) + " |")
    rows.append("|" + "---|" * len(head))
    by_key = {}
    for name, r in results.items():
        by_key.setdefault(system_key(name[len("slm_"):]), []).append(name)
    order = [(k, label, by_key.get(k, [None])) for k, label in SYSTEMS]
    order += [(k, k, names) for k, names in by_key.items() if k not in dict(SYSTEMS)]
    for key, label, names in order:
        for name in names:
            sc = results[name]["scores"].get(test_set) if name else None
            pub = PUBLISHED.get((key, domain))
            cells = [label + (f" (`{name}`)" if name else "")]
            if sc:
                s, path = sc
                cells += [fmt(s["langs"].get(lg, {}).get("rate")) for lg in langs]
                cells += [fmt(s["avg"]), fmt(s["all"]["rate"])]
                sources.append(f"- {label}: `{path}`")
            else:
                cells += ["-"] * (len(langs) + 2)
            cells.append(f"{pub:.2f} (published)" if pub is not None else "-")
            rows.append("| " + " | ".join(cells) + " |")
    return [f"## {title}", ""] + rows + [""] + (["Sources:"] + sources + [""] if sources else
                                               ["No system has been scored on this set yet.", ""])


def flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flatten(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield f"{prefix}{k}", v


#: modality_gap.json summary fields, in table order (others follow).
GAP_KEYS = ["ot_cost", "matched_cos", "retrieval_r1", "retrieval_r5", "chance_r1", "n_utts", "n_skipped"]


def gap_table(results):
    rows, keys = [], [k for k in GAP_KEYS if any(
        k in g.get("summary", g) for r in results.values() for g, _ in r["gap"].values())]
    for name, r in results.items():
        for ts, (g, _) in r["gap"].items():
            for k, _ in flatten(g.get("summary", g)):
                if k not in keys:
                    keys.append(k)
    if not keys:
        return ["## Modality gap", "", "No modality-gap report yet (stage 13 with --modality_gap true).", ""]
    rows.append("| system | test set | " + " | ".join(keys) + " |")
    rows.append("|" + "---|" * (len(keys) + 2))
    sources = []
    for name, r in results.items():
        for ts, (g, path) in r["gap"].items():
            summ = g.get("summary", g)
            vals = dict(flatten(summ))
            if isinstance(summ.get("ot_cost_fn"), str):  # costs are comparable only within one fn
                ts = f"{ts} (cost: {summ['ot_cost_fn']})"
            rows.append(f"| `{name}` | {ts} | " + " | ".join(
                "-" if k not in vals else (f"{vals[k]:.4g}" if isinstance(vals[k], float) else str(vals[k]))
                for k in keys) + " |")
            sources.append(f"- `{path}` (plot: `{path.with_suffix('.png')}`)")
    return (["## Modality gap (speech vs transcript embeddings in the LLM input space)", ""]
            + rows + ["", "Sources:"] + sources + [""])


def metrics(results, test_set: str, dataset: str, dataset_id: str = ""):
    """Hidden metric lines (model-index of the model card): each system's mean rate."""
    out = []
    for name, r in results.items():
        if test_set in r["scores"]:
            s, path = r["scores"][test_set]
            kinds = {v["metric"] for v in s["langs"].values()}
            out.append(metric_line(system=name, dataset=dataset, dataset_id=dataset_id, split=test_set,
                                   metric=kinds.pop() if len(kinds) == 1 else "wer",
                                   value=s["avg"], decoding=path.parent.parent.parent.name,
                                   source=str(path)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", type=Path, default=Path("exp"))
    p.add_argument("--out", type=Path, default=Path("RESULTS.md"))
    p.add_argument("--test_sets", nargs="+", default=["test", "test_covost2"],
                   help="the scored sets: the first is FLEURS's own (in-domain), every other "
                        "one a cross-domain set; one table each")
    p.add_argument("--title_suffix", default="")
    p.add_argument("--dataset_name", default="FLEURS", help="the in-domain data set's name")
    p.add_argument("--dataset_id", default="google/fleurs", help="its Hub id ('': none)")
    a = p.parse_args(argv)
    results = collect(a.exp_dir)
    intro = [f"Generated by `local/make_results.py --exp_dir {a.exp_dir}` on "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the score files listed "
             "under each table. WER in %, CER (grapheme clusters) for languages written "
             "without spaces; both after the Whisper-style normaliser "
             "(espnet_otreg.data.text_norm). *avg* is the mean over "
             "languages, *pooled* counts every word once. \"-\": not trained/scored here. "
             "*published*: the OTReg paper's reported average (arXiv 2508.08131), for comparison "
             "only; its baselines' and per-language numbers are not reproduced here."]
    in_domain, cross = a.test_sets[0], a.test_sets[1:]
    lines = rate_table(results, in_domain, "in", f"In-domain: FLEURS `{in_domain}`")
    for name in cross:
        # The paper's cross-domain number is CoVoST-2's (arXiv 2508.08131).
        covost = "covost" in name.lower()
        lines += rate_table(results, name, "cross" if covost else None,
                            f"Cross-domain: `{name}`" + (" (CoVoST-2 / Common Voice)" if covost else ""))
    lines += gap_table(results)
    write_results(a.out, title=f"FLEURS speech-LLM, base / + CTC / + OTReg {a.title_suffix}".rstrip(),
                  intro=intro, sections=lines,
                  metrics=metrics(results, in_domain, a.dataset_name, a.dataset_id)
                  + [m for name in cross for m in metrics(results, name, name)],
                  cwd=Path(__file__).resolve().parent)
    print(f"wrote {a.out} ({len(results)} systems with results)")


if __name__ == "__main__":
    main()
