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
- :mod:`espnet_otreg.data.text_norm`: a Whisper-style text normaliser and per-language
  WER (CER for languages written without spaces) with jiwer (FLEURS stage 13).
- :mod:`espnet_otreg.data.fleurs`: FLEURS language codes and a local FLEURS copy to
  data dirs (``utt2lang`` included).
- :mod:`espnet_otreg.data.hf_parquet`: FLEURS from the Hub's parquet conversion (or
  its original archives), SHA-256 checked and resumable.
- :mod:`espnet_otreg.data.common_voice`: CoVoST-2 / Common Voice cross-domain test sets.
- :mod:`espnet_otreg.data.cli`: the AISHELL helpers as recipe commands
  (``python -m espnet_otreg.data.cli speed_perturb|format|filter|split|merge|score``).

Submodules are imported on demand (``from espnet_otreg.data.audio import ...``) so that
importing one does not pull in the others' dependencies.
"""
