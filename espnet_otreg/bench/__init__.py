"""Benchmark support: timing, and the model pairs that ``bin/bench_step`` compares.

- :mod:`.timing`: median time and peak tensor memory of a callable (CPU and CUDA).
- :mod:`.gmot`: plain Conformer-CTC vs GM-OT, built by ``GMOTASRTask``.
- :mod:`.slm`: base speech-LLM vs OTReg, built by ``SLMTask``.

Both pairs are built the way a recipe builds its models: the Task's ``build_model``
from a YAML config (:func:`build_from_config`), with random weights (no download).
The entry points are ``python -m espnet_otreg.bin.bench_ot`` and ``bench_step``.
"""

import tempfile
from pathlib import Path
from typing import Dict

import torch
import yaml


def build_from_config(task, conf: Dict) -> torch.nn.Module:
    """``task.build_model`` from a config dict, through a YAML file as a recipe does."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(conf), encoding="utf-8")
        return task.build_model(task.get_parser().parse_args(["--config", str(path)]))
