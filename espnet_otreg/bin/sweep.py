"""Train a grid of ``model_conf`` values x seeds through a recipe, and tabulate it.

The GM-OT paper (arXiv 2505.13079) names hyperparameter sensitivity as its limitation
(alpha, rho, beta, ws, lambda); this is the tool for finding out on your own data::

    python -m espnet_otreg.bin.sweep --recipe_dir egs2/aishell_gmot/asr1 \\
        --config conf/train_asr_gmot.yaml --grid alpha=0,0.02,0.1 --grid rho=0,0.5 \\
        --seeds 0 1 2 [--name alpha_rho] [--run_args "--ngpu 1"]

(``./run.sh --sweep "alpha=0,0.02 rho=0,0.5" --sweep_seeds "0 1 2"`` in either recipe
does the same.) For every setting and seed it runs the recipe's stages 11-13 (train,
decode, score; ``--stages``) as ``./run.sh --asr_config C --asr_tag <tag> --asr_args
"--model_conf k=v ... --seed s"``, one run after another, each in
``<expdir>/<exp_prefix><tag>`` (``asr_``, ``slm_`` for FLEURS: the recipe's
``local/recipe.yaml``). Data preparation (stages 1-10) must
have run once before. Resumable: a run whose scores exist is skipped, and an
interrupted one resumes from its checkpoint (run.sh does).

``--jobs N`` runs N of them at a time (their output in ``<expdir>/sweep_<name>/logs``);
with ``--gpus_per_job K`` job slot ``i`` sees GPUs ``iK .. iK + K - 1`` only
(``CUDA_VISIBLE_DEVICES``), e.g. ``--jobs 4 --gpus_per_job 2 --run_args "--ngpu 2"`` on
an 8-GPU node.

Then it reads each run's scores where the recipe's ``local/recipe.yaml`` says they are
(:mod:`espnet_otreg.recipe.info`: AISHELL's CER in ``score_cer/result.txt``, FLEURS's
average WER in ``score/scores.json``), of the first decoding config found, and writes

- ``<expdir>/sweep_<name>/sweep.json``: every run's metric;
- ``<expdir>/sweep_<name>/sweep.md``: mean, standard deviation (over seeds, ``n-1``)
  and number of seeds per setting and test set; the same table goes into the recipe's
  RESULTS.md between ``<!-- sweep:<name> -->`` markers (kept when stage 13 rewrites
  the rest);
- ``<expdir>/sweep_<name>/sweep_<key>.png``: for each swept key, the metric against
  its value with error bars (one line per setting of the other keys).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from espnet_otreg.recipe.info import RecipeInfo
from espnet_otreg.recipe.results import put_sweep_block
from espnet_otreg.recipe.seeds import mean_std


def parse_grid(items: Sequence[str]) -> Dict[str, List]:
    """``["alpha=0,0.02", "ws=null,5"]`` -> ``{"alpha": [0, 0.02], "ws": [None, 5]}``
    (values read as YAML, as ESPnet reads ``--model_conf k=v``)."""
    grid: Dict[str, List] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--grid wants key=v1,v2,..., got {item!r}")
        grid[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def _fmt_value(v) -> str:
    return "null" if v is None else str(v)


def tag_of(name: str, setting: Dict, seed: int) -> str:
    parts = [f"{k}{_fmt_value(v)}" for k, v in setting.items()]
    tag = "_".join([f"sweep_{name}", *parts, f"seed{seed}"])
    return re.sub(r"[^A-Za-z0-9_.-]", "-", tag)


def settings(grid: Dict[str, List]) -> List[Dict]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def read_scores(exp: Path, sets: Sequence[str],
                info: Optional[RecipeInfo] = None) -> Optional[Dict[str, float]]:
    """The metric of each set in a run's directory, or None when one is missing, read
    as the recipe declares it (``local/recipe.yaml``: :class:`RecipeInfo`; default: the
    recipe ``exp`` lies in)."""
    return (info or RecipeInfo.find(exp)).read_scores(exp, sets)


def run_sh_option(args: Sequence[str], name: str) -> Optional[str]:
    """The value of run.sh option ``--name`` in ``args``, in either spelling that
    run.sh's ``parse_options`` accepts (``--name value``, ``--name=value``); the last
    one wins, as there."""
    value = None
    for i, a in enumerate(args):
        if a == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def table(grid: Dict[str, List], runs: List[Dict], sets: Sequence[str], metric: str) -> str:
    keys = list(grid)
    lines = [
        "| " + " | ".join(keys + [f"{s} {metric} (mean ± sd, n)" for s in sets]) + " |",
        "|" + "---|" * len(keys) + "---:|" * len(sets),
    ]
    for setting in settings(grid):
        cells = [_fmt_value(setting[k]) for k in keys]
        for s in sets:
            vals = [r["scores"][s] for r in runs if r["setting"] == setting and r["scores"]]
            m, sd, n = mean_std(vals)
            cells.append("-" if n == 0 else f"{m:.2f} ± {'-' if math.isnan(sd) else f'{sd:.2f}'} ({n})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, key: str, grid: Dict[str, List], runs: List[Dict], set_name: str,
         metric: str) -> None:
    """Metric against ``key``'s value, one line per setting of the other keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [k for k in grid if k != key]
    values = grid[key]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    xs = values if numeric else list(range(len(values)))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for rest in itertools.product(*(grid[k] for k in others)):
        fixed = dict(zip(others, rest))
        ms, sds = [], []
        for v in values:
            setting = {**fixed, key: v}
            vals = [r["scores"][set_name] for r in runs
                    if r["scores"] and all(r["setting"][k] == setting[k] for k in grid)]
            m, sd, _ = mean_std(vals)
            ms.append(m)
            sds.append(0.0 if math.isnan(sd) else sd)
        label = ", ".join(f"{k}={_fmt_value(v)}" for k, v in fixed.items()) or None
        ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=3, label=label)
    if not numeric:
        ax.set_xticks(xs, [_fmt_value(v) for v in values])
    ax.set(xlabel=key, ylabel=f"{set_name} {metric} (%)",
           title=f"{metric} vs {key} (mean ± sd over seeds)")
    if others:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe_dir", type=Path, required=True, help="the dir with run.sh")
    p.add_argument("--config", required=True, help="training config (relative to recipe_dir)")
    p.add_argument("--grid", action="append", default=[],
                   help="key=v1,v2,... of model_conf (repeat for more keys; none: the "
                   "config as it is, over the seeds)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--name", default=None, help="default: the swept keys")
    p.add_argument("--sets", nargs="+", default=["dev", "test"], help="scored sets")
    p.add_argument("--stages", default="11-13", help="run.sh stages per run (first-last)")
    p.add_argument("--expdir", default=None,
                   help="run.sh's --expdir (default: exp, or mini/exp with --mini true)")
    p.add_argument("--results_md", default=None,
                   help="RESULTS.md to update (default: the recipe's, mini/ with --mini)")
    p.add_argument("--run_args", default="", help="more run.sh options, e.g. '--mini true'")
    p.add_argument("--asr_args", default="",
                   help="more training options for every run, e.g. '--max_epoch 1'")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--gpus_per_job", type=int, default=0,
                   help="pin each job slot to this many GPUs (0: no pinning)")
    p.add_argument("--dry_run", action="store_true", help="print the commands only")
    return p


def run_all(todo: List[Tuple[str, List[str], Path]], recipe: Path, jobs: int,
            gpus_per_job: int, log_dir: Path) -> None:
    """Run ``(tag, cmd, exp)`` items ``jobs`` at a time; the first failure stops new
    starts, lets the running ones finish, and is raised with its log."""
    import concurrent.futures as cf
    import os
    import queue

    slots: "queue.Queue[int]" = queue.Queue()
    for i in range(jobs):
        slots.put(i)
    t0 = time.time()

    def one(n, tag, cmd, exp):
        slot = slots.get()
        try:
            env = dict(os.environ)
            if gpus_per_job > 0:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(
                    str(slot * gpus_per_job + g) for g in range(gpus_per_job))
            where = ""
            if jobs > 1:  # interleaved output would be unreadable: one log per run
                log_dir.mkdir(parents=True, exist_ok=True)
                where = f" (log {log_dir / tag}.log)"
            logging.info(f"[{n}/{len(todo)}] {tag}: {shlex.join(cmd)}{where}")
            if jobs > 1:
                with open(log_dir / f"{tag}.log", "w", encoding="utf-8") as f:
                    rc = subprocess.run(cmd, cwd=recipe, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
            else:
                rc = subprocess.run(cmd, cwd=recipe, env=env).returncode
            if rc != 0:
                raise SystemExit(f"sweep: run {tag} failed (exit {rc}); its log: "
                                 f"{exp}/train.log{where}. Rerun the same command to resume.")
            logging.info(f"[{n}/{len(todo)}] {tag}: done ({time.time() - t0:.0f} s so far)")
        finally:
            slots.put(slot)

    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, n, *item) for n, item in enumerate(todo, 1)]
        for f in cf.as_completed(futures):
            if f.exception() is not None:
                for g in futures:
                    g.cancel()
                raise f.exception()


def main(argv=None) -> Dict:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sweep: %(message)s")
    grid = parse_grid(args.grid)
    name = args.name or "_".join(grid) or Path(args.config).stem
    recipe = args.recipe_dir.resolve()
    run_args = shlex.split(args.run_args)
    info = RecipeInfo.load(recipe)
    mini = run_sh_option(run_args, "mini") == "true"
    expdir = recipe / (args.expdir or (f"{info.mini_dir}/exp" if mini else "exp"))
    first, _, last = args.stages.partition("-")
    plan = [(s, seed) for s in settings(grid) for seed in args.seeds]
    if args.jobs < 1 or args.gpus_per_job < 0:
        raise SystemExit("sweep: --jobs must be >= 1 and --gpus_per_job >= 0")
    runs: List[Dict] = []
    todo = []
    for i, (setting, seed) in enumerate(plan, 1):
        tag = tag_of(name, setting, seed)
        exp = expdir / f"{info.exp_prefix}{tag}"
        overrides = [x for k, v in setting.items() for x in ("--model_conf", f"{k}={_fmt_value(v)}")]
        cmd = ["./run.sh", "--stage", first, "--stop_stage", last or first,
               "--asr_config", args.config, "--asr_tag", tag,
               "--asr_args", shlex.join(overrides + ["--seed", str(seed)]
                                        + shlex.split(args.asr_args)), *run_args]
        if read_scores(exp, args.sets, info) is not None:
            logging.info(f"[{i}/{len(plan)}] {tag}: scored already, skipped")
        elif args.dry_run:
            print(shlex.join(cmd))
        else:
            todo.append((tag, cmd, exp))
        runs.append(dict(tag=tag, setting=setting, seed=seed, exp=exp))
    if not args.dry_run:
        run_all(todo, recipe, args.jobs, args.gpus_per_job, expdir / f"sweep_{name}" / "logs")
    for r in runs:
        exp = r.pop("exp")
        r["scores"] = read_scores(exp, args.sets, info)
        if r["scores"] is None and not args.dry_run:
            raise SystemExit(f"sweep: run {r['tag']} finished but {exp} has no scores for "
                             f"{args.sets}")
        if not args.dry_run:
            logging.info(f"{r['tag']}: {r['scores']}")
    if args.dry_run:
        return dict(runs=runs)

    metric = info.metric
    out = expdir / f"sweep_{name}"
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(name=name, config=args.config, grid=grid, seeds=args.seeds,
                   sets=args.sets, metric=metric, runs=runs)
    (out / "sweep.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    over = ", ".join(f"{k} in {{{', '.join(map(_fmt_value, v))}}}" for k, v in grid.items())
    body = (
        f"### Sweep `{name}`: {metric} (%) of `{args.config}`"
        + (f" over {over}," if over else "")
        + f" seeds {' '.join(map(str, args.seeds))}\n\n"
        + f"Command: `python -m espnet_otreg.bin.sweep {shlex.join(sys.argv[1:] if argv is None else argv)}`"
        + "; sd over seeds (n-1), '-' with one seed.\n\n"
        + table(grid, runs, args.sets, metric)
    )
    (out / "sweep.md").write_text(body, encoding="utf-8")
    for key in grid:
        plot(out / f"sweep_{key}.png", key, grid, runs, args.sets[-1], metric)
    results_md = Path(args.results_md) if args.results_md else (
        recipe / (f"{info.mini_dir}/RESULTS.md" if mini else "RESULTS.md"))
    put_sweep_block(results_md, name, body)
    print(body)
    logging.info(f"sweep {name}: {len(runs)} runs -> {out}, {results_md}")
    return summary


if __name__ == "__main__":
    main()
