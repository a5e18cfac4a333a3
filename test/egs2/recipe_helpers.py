"""Shared by the recipe tests: a working copy of a recipe, as a user's checkout has it."""

import shutil
from pathlib import Path


def copy_recipe(recipe: Path, work: Path) -> Path:
    """Copy run.sh, path.sh, conf/ and local/ of ``recipe`` into ``work`` (created)."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("run.sh", "path.sh", "conf", "local"):
        src = recipe / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
    return work
