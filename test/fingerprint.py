"""Fingerprints of a training step (loss, stats, per-parameter gradient sum and sum of
squares) and their comparison, for the fixed-batch tests that pin numerics across a
refactor (test/asr/test_numerics_fixed.py, test/slm/test_slm_numerics_fixed.py).

Losses and stats must agree to 1e-6 relative. A gradient sum of a parameter whose
gradient nearly cancels (a bias before a normalisation) is float32 rounding noise, and
convolution and GEMM kernels round differently on another CPU; so each parameter's
gradient (its sum and the root of its sum of squares) may differ by ``GRAD_RTOL`` of
its own norm or ``GRAD_FLOOR`` of the whole step's gradient norm, whichever is larger.
Across two x86 machines the largest difference seen was 1.4e-5 of the step's norm.
"""

from __future__ import annotations

import math

import pytest

LOSS_RTOL = 1e-6
GRAD_RTOL = 1e-3
GRAD_FLOOR = 3e-5
#: Keys of a fingerprint that are not a parameter's gradient.
NOT_GRADS = {"loss", "weight", "stats", "hyps", "reasons", "entropy", "cosine"}


def _is_grad(key, value) -> bool:
    return key not in NOT_GRADS and isinstance(value, list) and len(value) == 2 and all(
        isinstance(x, float) for x in value)


def assert_step_close(got: dict, ref: dict, path: str = "") -> None:
    """``got`` reproduces ``ref``: same keys; gradients as the module says, everything
    else (losses, stats, lists of values, token ids) to LOSS_RTOL or exactly."""
    assert set(got) == set(ref), (path, sorted(set(got) ^ set(ref)))
    grads = {k: v for k, v in ref.items() if _is_grad(k, v)}
    step_norm = math.sqrt(sum(v[1] for v in grads.values()))
    for key, value in ref.items():
        where = f"{path}/{key}"
        if key in grads:
            s, q = got[key]
            tol = max(GRAD_RTOL * math.sqrt(value[1]), GRAD_FLOOR * step_norm)
            assert abs(s - value[0]) <= tol, (where, "sum", s, value[0], tol)
            assert abs(math.sqrt(q) - math.sqrt(value[1])) <= tol, (where, "norm", q, value[1], tol)
        elif isinstance(value, dict):
            assert_step_close(got[key], value, where)
        elif isinstance(value, list) and value and isinstance(value[0], float):
            assert got[key] == pytest.approx(value, rel=LOSS_RTOL, abs=1e-7), where
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=LOSS_RTOL, abs=1e-7, nan_ok=True), where
        else:
            assert got[key] == value, where
