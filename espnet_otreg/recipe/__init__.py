"""What the recipes under ``egs2/`` share (as ESPnet's ``egs2/TEMPLATE`` and icefall's
``shared/`` do), shipped with the package so that a copied or pip-installed recipe finds it:

- ``lib.sh`` (:data:`LIB_SH`): the stage library every ``run.sh`` sources through its
  ``path.sh``: option parsing, ``log``/``die``, the parallel job runner ``run_jobs``
  (split, run N jobs, wait, report the failing job's log tail, merge; ``--cmd local``
  or ``slurm``), ``run_training`` (launch with a live progress view) and the stages
  every recipe shares (``format_sets``, ``filter_sets``, ``aggregate_stats``,
  ``upload_model_zoo``, ``run_sweep``).
- :mod:`espnet_otreg.recipe.info`: what a recipe says about itself
  (``local/recipe.yaml``: experiment prefix, metric, score files), for tools that drive
  it from outside (the sweep).
- :mod:`espnet_otreg.recipe.seeds`: mean ± sd and the paired t-test over seeds.
- :mod:`espnet_otreg.recipe.results`: RESULTS.md pieces (tables, ESPnet's environment
  block) and reading metrics back for a model card.
- :mod:`espnet_otreg.recipe.zoo`: the model-zoo layout (unpacked ESPnet zip), the model
  card (huggingface_hub's ``ModelCard``), the upload, and loading a local folder.
"""

from pathlib import Path

LIB_SH = str(Path(__file__).with_name("lib.sh"))

__all__ = ["LIB_SH"]
