"""Data preparation for the recipes, without Kaldi (pure Python, pip packages only).

- :mod:`espnet_otreg.data.datadir`: Kaldi/ESPnet data dirs (read/write/validate,
  subset, combine, split/merge for parallel jobs).
- :mod:`espnet_otreg.data.download`: resumable, MD5-checked downloads; safe tar
  extraction with a done-stamp.
- :mod:`espnet_otreg.data.audio`: read ``wav.scp`` entries (files, arks, pipes),
  speed perturbation (sox ``speed`` in-process), format a dump dir (ESPnet stage 3).
- :mod:`espnet_otreg.data.filtering`: drop utterances by duration / text length / CTC
  feasibility, reporting each (ESPnet stage 4).
- :mod:`espnet_otreg.data.scoring`: CER/WER with ``sclite`` or an sclite-compatible
  Python aligner (ESPnet stage 13).
- :mod:`espnet_otreg.data.cli`: the above as recipe commands
  (``python -m espnet_otreg.data.cli speed_perturb|format|filter|split|merge|score``).

Submodules are imported on demand (``from espnet_otreg.data.audio import ...``) so that
importing one does not pull in the others' dependencies.
"""
