"""Keep what an experiment's tables are printed from, small enough to commit.

An experiment's run directories hold GB of checkpoints and features, and they do not
survive the machine; its summary tables need only two things per run: the validation
lines the ESPnet trainer logged (``<N>epoch results: ... [valid] ...``) and each decode
set's score file. :func:`archive_runs` copies exactly those, under the same relative
paths, into one ``.tar.gz``; unpacked anywhere, it is an ``--exp`` directory that the
summary scripts read as if the runs were there::

    python -m espnet_otreg.recipe.archive --recipe_dir . --exp tts/exp \\
        --runs 'asr_sweep_tts_*_ep16_seed*' --extra tts/teachers/*/pretrain.json \\
        --out ../../../docs/experiments/runs/teacher_study.tar.gz
    mkdir /tmp/runs && tar -xzf .../teacher_study.tar.gz -C /tmp/runs
    python local/summarize_tts_experiment.py --exp /tmp/runs/exp --teachers /tmp/runs/teachers
"""

from __future__ import annotations

import argparse
import gzip
import io
import logging
import re
import sys
import tarfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from espnet_otreg.recipe.info import RecipeInfo

#: The trainer's per-epoch summary lines: all a summary reads from a training log.
EPOCH_LINE = re.compile(r"\d+epoch results: ")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def run_files(run: Path, score_file: str, keep: Sequence[str] = ()) -> List[Path]:
    """The files of one run directory that an archive keeps: its training logs (the
    current one, those run.sh rotated, the log before a resume), its score files, and
    the files matching the globs ``keep`` (relative to the run directory)."""
    logs = sorted(run.glob("train*.log"))
    scores = sorted(run.glob(f"*/*/{score_file}"))
    kept = sorted({f for g in keep for f in run.glob(g) if f.is_file()} - set(logs) - set(scores))
    return logs + scores + kept


def archive_runs(exp: Path, patterns: Sequence[str], out: Path, score_file: str,
                 extra: Iterable[Path] = (), keep: Sequence[str] = ()) -> List[str]:
    """Write ``out`` (``.tar.gz``) with, for each run directory of ``exp`` matching one of
    ``patterns`` (globs), the epoch lines of its logs and its score files, under
    ``exp/<run>/...`` (and the files of each run matching the globs ``keep``, e.g.
    ``"*/*/score/per_utt.txt"``); ``extra`` files go in whole under their last three path parts
    (``tts/teachers/base/pretrain.json`` as ``teachers/base/pretrain.json``). Returns the run names; a pattern that matches no
    run is an error (a typo would otherwise archive nothing)."""
    exp = Path(exp)
    runs = []
    for pattern in patterns:
        found = sorted(p for p in exp.glob(pattern) if p.is_dir())
        if not found:
            raise FileNotFoundError(f"no run directory in {exp} matches '{pattern}'")
        runs += [p for p in found if p not in runs]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # gzip without a time stamp or name in its header: the same runs give the same bytes
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                               filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for run in runs:
            files = run_files(run, score_file, keep)
            if not any(f.name.endswith(".log") for f in files):
                logging.warning(f"{run}: no training log")
            for f in files:
                data = f.read_bytes()
                if f.suffix == ".log":
                    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
                    data = "".join(x for x in lines if EPOCH_LINE.search(x)).encode()
                _add_bytes(tar, f"exp/{f.relative_to(exp).as_posix()}", data)
        for f in extra:
            f = Path(f)
            name = f"{f.parent.parent.name}/{f.parent.name}/{f.name}"
            _add_bytes(tar, name, f.read_bytes())
    logging.info(f"{out}: {len(runs)} runs, {out.stat().st_size / 1024:.0f} KiB")
    return [r.name for r in runs]


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe_dir", type=Path, default=Path("."),
                   help="the recipe (its local/recipe.yaml names the score file)")
    p.add_argument("--exp", type=Path, required=True, help="the runs' parent directory")
    p.add_argument("--runs", nargs="+", required=True, help="run directory globs")
    p.add_argument("--extra", nargs="*", type=Path, default=[],
                   help="more files kept whole (e.g. teachers/<name>/pretrain.json)")
    p.add_argument("--keep", nargs="*", default=[],
                   help="more files of each run, globs relative to it (per-utterance scores, "
                   "modality-gap reports)")
    p.add_argument("--out", type=Path, required=True, help="the .tar.gz to write")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    info = RecipeInfo.load(args.recipe_dir)
    names = archive_runs(args.exp, args.runs, args.out, info.score_file, args.extra, args.keep)
    print(f"{args.out}: {len(names)} runs")


if __name__ == "__main__":
    sys.exit(main())
