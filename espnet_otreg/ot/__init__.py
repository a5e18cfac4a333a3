"""Batched, masked optimal transport for speech-text alignment.

Read it like ott-jax, in layers: costs (:mod:`.costs`) and graphs (:mod:`.graphs`,
dense or banded edge costs); the problem (:mod:`.problem`: costs, marginals, masks);
the kernel (:mod:`.kernel`: the Gibbs kernel and every numerical device behind a small
interface); and the solvers, which take a padded batch of problems and return an
:class:`OTResult`:

- :func:`sinkhorn`: entropic OT, balanced or unbalanced (``tau``; a pair
  ``(tau_a, tau_b)`` with None on a hard side is one-sided, see :func:`tau_pair`).
- :func:`fused_gromov_wasserstein`: entropic fused Gromov-Wasserstein (square loss).

Masks (``True`` on real positions) say which rows and columns of a padded problem are
real; :func:`lengths_to_mask` makes them from lengths.

Losses built on these live with their models (``espnet_otreg.asr`` for GM-OT,
``espnet_otreg.slm`` for OTReg). Every solver is checked against POT in ``test/ot``.
"""

from espnet_otreg.ot import costs
from espnet_otreg.ot.costs import cosine, max_cost_scale, sqeuclidean, structure, temporal_prior
from espnet_otreg.ot.gromov import FGWResult, fused_gromov_wasserstein
from espnet_otreg.ot.masks import lengths_to_mask
from espnet_otreg.ot.problem import tau_pair
from espnet_otreg.ot.sinkhorn import OTResult, sinkhorn

__all__ = [
    "costs",
    "cosine",
    "sqeuclidean",
    "structure",
    "temporal_prior",
    "max_cost_scale",
    "sinkhorn",
    "fused_gromov_wasserstein",
    "OTResult",
    "FGWResult",
    "lengths_to_mask",
    "tau_pair",
]
