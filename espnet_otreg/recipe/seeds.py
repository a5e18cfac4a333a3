"""Statistics over seeds, as the experiment tables print them (docs/experiments.md).

- :func:`mean_std`: mean, standard deviation (``n - 1``) and count.
- :func:`paired_t`: the paired t statistic of per-seed differences and its two-sided
  p-value (``n - 1`` degrees of freedom).

Used by ``python -m espnet_otreg.bin.sweep`` and the recipes' experiment summaries.
"""

from __future__ import annotations

import math
import statistics
from typing import Optional, Sequence, Tuple


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
