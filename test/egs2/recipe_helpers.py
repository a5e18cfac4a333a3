"""Shared by the recipe tests: a working copy of a recipe, as a user's checkout has it,
and a recipe's local/ script loaded as a module."""

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType


def copy_recipe(recipe: Path, work: Path) -> Path:
    """Copy run.sh, path.sh, conf/ and local/ of ``recipe`` into ``work`` (created)."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("run.sh", "path.sh", "conf", "local"):
        src = recipe / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
    return work


def load_local(recipe: Path, name: str) -> ModuleType:
    """``<recipe>/local/<name>.py`` as a module (recipe scripts are not a package)."""
    path = recipe / "local" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{recipe.parent.name}_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
