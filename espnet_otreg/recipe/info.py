"""What a recipe says about itself: ``<recipe>/local/recipe.yaml``.

Tools that drive a recipe from outside (:mod:`espnet_otreg.bin.sweep`, the experiment
summaries) need to know where its runs go and how they are scored. Each recipe declares
that once, next to its ``run.sh``, instead of the tools guessing from its source::

    exp_prefix: asr_                  # run.sh trains into <expdir>/<exp_prefix><tag>
    metric: CER                       # the error rate the recipe reports
    score_file: score_cer/result.txt  # per <decode dir>/<set>/: result.txt (sclite
                                      # layout) or a scores.json with an "avg"
    mini_dir: mini                    # --mini true writes <mini_dir>/exp, <mini_dir>/RESULTS.md
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, Optional, Sequence

import yaml

INFO_FILE = Path("local") / "recipe.yaml"


class RecipeInfoError(ValueError):
    """``local/recipe.yaml`` is missing or malformed (the message names the file and key)."""


@dataclass(frozen=True)
class RecipeInfo:
    exp_prefix: str
    metric: str
    score_file: str
    mini_dir: str = "mini"

    @classmethod
    def load(cls, recipe_dir: Path) -> "RecipeInfo":
        path = Path(recipe_dir) / INFO_FILE
        if not path.is_file():
            raise RecipeInfoError(f"{path}: missing (every recipe describes itself there; "
                                  f"keys: {', '.join(f.name for f in fields(cls))})")
        conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(conf) - known)
        if unknown:
            raise RecipeInfoError(f"{path}: unknown key(s) {unknown} (known: {sorted(known)})")
        try:
            info = cls(**conf)
        except TypeError as e:  # a required key is missing
            raise RecipeInfoError(f"{path}: {e}") from None
        if Path(info.score_file).suffix not in (".txt", ".json"):
            raise RecipeInfoError(f"{path}: score_file {info.score_file!r} must be a "
                                  "result.txt (sclite layout) or a .json with an 'avg'")
        return info

    @classmethod
    def find(cls, path: Path) -> "RecipeInfo":
        """The description of the recipe that ``path`` (a run dir, say) lies in."""
        path = Path(path).resolve()
        for d in (path, *path.parents):
            if (d / INFO_FILE).is_file():
                return cls.load(d)
        raise RecipeInfoError(f"{path} is not inside a recipe (no {INFO_FILE} above it)")

    def read_scores(self, exp: Path, sets: Sequence[str]) -> Optional[Dict[str, float]]:
        """The metric of each set in run dir ``exp``, or None when one is missing: from
        ``<decode dir>/<set>/<score_file>`` of the first decoding directory (sorted by
        name) that has all sets."""
        for dec in sorted(p for p in Path(exp).glob("*") if p.is_dir()):
            files = [dec / s / self.score_file for s in sets]
            if all(f.is_file() for f in files):
                return {s: read_score_file(f) for s, f in zip(sets, files)}
        return None


def read_score_file(path: Path) -> float:
    """The error rate (%) in a score file: CER (else the error rate) of a sclite-layout
    ``result.txt``, or the ``avg`` of a ``scores.json`` (FLEURS's language average)."""
    path = Path(path)
    if path.suffix == ".json":
        return float(json.loads(path.read_text(encoding="utf-8"))["avg"])
    from espnet_otreg.data.scoring import parse_result

    r = parse_result(path)
    return r.get("cer", r["err"])
