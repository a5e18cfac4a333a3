"""GM-OT: graph-matching optimal transport for BERT-to-CTC knowledge transfer.

- :mod:`.teacher`: the frozen BERT-style teacher and its token features ``Z_L``.
- :mod:`.gmot`: the GM-OT coupling (fused Gromov-Wasserstein between the acoustic and
  the linguistic graph) and the losses built on it.
- :mod:`.espnet_model`: :class:`ESPnetGMOTModel`, an ``ESPnetASRModel`` (``model: gmot``).
"""
