"""Statistics over seeds, as the experiment tables print them (docs/experiments.md).

- :func:`mean_std`: mean, standard deviation (``n - 1``) and count.
- :func:`paired_t`: the paired t statistic of per-seed differences and its two-sided
  p-value (``n - 1`` degrees of freedom).
- :func:`bootstrap_diff`: the error-rate difference of two systems on the same
  utterances, with an utterance-level bootstrap interval (seed noise is not in it:
  that is what the paired t over seeds is for).

Used by ``python -m espnet_otreg.bin.sweep`` and the recipes' experiment summaries.
"""

from __future__ import annotations

import math
import statistics
from typing import Dict, Optional, Sequence, Tuple


def mean_std(values: Sequence[float]) -> Tuple[float, float, int]:
    """``(mean, sd, n)``; sd is NaN for fewer than two values, both NaN for none."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    return statistics.fmean(values), (statistics.stdev(values) if n > 1 else math.nan), n


def paired_t(diffs: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """Paired t statistic and two-sided p-value of ``diffs`` (None when undefined: fewer
    than two, or all zero); equal non-zero differences give ``t = +-inf``, ``p = 0``."""
    n = len(diffs)
    if n < 2:
        return None, None
    mean, sd, _ = mean_std(diffs)
    if sd <= 1e-9 * max(1.0, abs(mean)):  # equal differences (up to float rounding)
        return (None, None) if abs(mean) <= 1e-9 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    from scipy import stats

    return t, float(2 * stats.t.sf(abs(t), n - 1))


def bootstrap_diff(errors_a: Sequence[Sequence[float]], errors_b: Sequence[Sequence[float]],
                   n_ref: Sequence[float], n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> Dict[str, float]:
    """Error rate of A minus B (percent) over the same utterances, pooled over runs,
    with a bootstrap over utterances.

    ``errors_a[r][u]`` / ``errors_b[r][u]``: errors of run ``r`` (one per seed, A and B
    of the same seed) on utterance ``u``; ``n_ref[u]``: its reference length. Each
    bootstrap sample draws utterances with replacement and keeps them for every run,
    so the interval measures how much the difference depends on which sentences were
    tested; the difference is ``100 * sum(err_a - err_b) / (runs * sum(n_ref))``.
    Returns ``diff``, ``lo``, ``hi`` (the central ``level`` interval) and ``p_le_0`` /
    ``p_ge_0``, the fraction of samples with a difference at most / at least 0.
    """
    import numpy as np

    a, b = np.asarray(errors_a, dtype=float), np.asarray(errors_b, dtype=float)
    n = np.asarray(n_ref, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != n.shape[0] or a.shape[1] == 0:
        raise ValueError(f"errors of A {a.shape} and B {b.shape} must be (runs, utterances) "
                         f"with utterances = len(n_ref) = {n.shape[0]} > 0")
    d = (a - b).sum(0)  # per utterance, summed over runs
    runs = a.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n.shape[0], size=(n_boot, n.shape[0]))
    samples = 100.0 * d[idx].sum(1) / (runs * n[idx].sum(1))
    alpha = (1.0 - level) / 2
    return dict(
        diff=float(100.0 * d.sum() / (runs * n.sum())),
        lo=float(np.quantile(samples, alpha)), hi=float(np.quantile(samples, 1 - alpha)),
        p_le_0=float((samples <= 0).mean()), p_ge_0=float((samples >= 0).mean()),
    )
