"""espnet-otreg: optimal transport for speech recognition, as an ESPnet plugin.

- :mod:`espnet_otreg.ot`: batched, masked OT solvers (Sinkhorn, unbalanced, fused
  Gromov-Wasserstein), checked against POT.
- :mod:`espnet_otreg.asr`: GM-OT, BERT-to-Conformer-CTC distillation (``model: gmot``).
- :mod:`espnet_otreg.slm`: a speech-LLM with OT regularisation (OTReg).
- :mod:`espnet_otreg.tasks`: ESPnet tasks that know our models.
- :mod:`espnet_otreg.bin`: command-line entry points (``python -m espnet_otreg.bin.X``).

``import espnet_otreg`` registers our ASR model classes with ESPnet's stock
``espnet2.tasks.asr`` choices (see :func:`register`), so stock tools such as
``espnet2.bin.asr_inference.Speech2Text`` load our configs too. The registration runs
when ``espnet2.tasks.asr`` is imported (now, if it already is), so that importing
``espnet_otreg.ot`` alone stays light.
"""

from espnet_otreg._hooks import register, register_on_import

__version__ = "0.1.0"
__all__ = ["register", "__version__"]

register_on_import()
