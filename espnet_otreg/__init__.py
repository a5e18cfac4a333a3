"""espnet-otreg: optimal transport for speech recognition, as an ESPnet plugin.

- :mod:`espnet_otreg.ot`: batched, masked OT solvers (Sinkhorn, unbalanced, fused
  Gromov-Wasserstein), checked against POT.
- :mod:`espnet_otreg.bin`: command-line entry points (``python -m espnet_otreg.bin.X``).
"""

__version__ = "0.1.0"
