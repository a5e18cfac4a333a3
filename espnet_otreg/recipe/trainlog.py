"""What a run's ESPnet training logs say per epoch: the validation stats of each
``<N>epoch results: ... [valid] k=v, ...`` line, for the experiment summaries'
training curves (both recipes' ``local/summarize_*_experiment.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

VALID = re.compile(r"(\d+)epoch results: .*?\[valid\] (.*)$")


def valid_curve(train_log: Path) -> Dict[int, Dict[str, float]]:
    """Per epoch, the validation stats the ESPnet trainer logged (``[valid] k=v, ...``);
    values that are not numbers are left out; an absent log gives ``{}``."""
    out = {}
    if not train_log.is_file():
        return out
    for line in train_log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = VALID.search(line)
        if not m:
            continue
        stats = {}
        for kv in m.group(2).split(", "):
            k, _, v = kv.partition("=")
            try:
                stats[k] = float(v)
            except ValueError:
                pass
        out[int(m.group(1))] = stats
    return out


def run_curve(exp: Path) -> List[Dict[str, float]]:
    """A run's validation stats, epoch 1 on, from all its logs: a resumed run's first
    epochs (``train.before_resume.log``), the logs run.sh rotated on a rerun
    (``train.<n>.log``, older for larger n), then ``train.log``; a later log wins for an
    epoch that two logs have."""
    rotated = sorted(exp.glob("train.[0-9]*.log"), key=lambda p: -int(p.name.split(".")[1]))
    by_epoch: Dict[int, Dict[str, float]] = {}
    for log in [exp / "train.before_resume.log", *rotated, exp / "train.log"]:
        by_epoch.update(valid_curve(log))
    return [by_epoch[e] for e in sorted(by_epoch)]
