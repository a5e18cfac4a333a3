"""Fingerprints of a training step (loss, stats, per-parameter gradient sum and sum of
squares) and their comparison, for the fixed-batch tests that pin numerics across a
refactor (test/asr/test_numerics_fixed.py, test/slm/test_slm_numerics_fixed.py).

Losses and stats must agree to 1e-5 relative. A gradient sum of a parameter whose
gradient nearly cancels (a bias before a normalisation) is float32 rounding noise, and
convolution and GEMM kernels round differently on another CPU; so every gradient
entry (sum and root of the sum of squares) is compared against the whole step's
gradient norm, to ``GRAD_RTOL`` of it. Across two x86 machines the largest difference
seen was 1.4e-5 of the norm; a changed formula moves the loss or the gradients far
more.
"""

from __future__ import annotations

import math

import pytest

LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4


def _is_grad(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(
        isinstance(x, float) for x in value)


def assert_step_close(got: dict, ref: dict, path: str = "") -> None:
    """``got`` reproduces ``ref``: same keys; gradients to GRAD_RTOL of the gradient norm,
    everything else (losses, stats, lists of values, token ids) to LOSS_RTOL or exactly."""
    assert set(got) == set(ref), (path, sorted(set(got) ^ set(ref)))
    grads = {k: v for k, v in ref.items() if _is_grad(v)}
    norm = math.sqrt(sum(v[1] for v in grads.values())) or 1.0
    for key, value in ref.items():
        where = f"{path}/{key}"
        if key in grads:
            s, q = got[key]
            assert abs(s - value[0]) <= GRAD_RTOL * norm, (where, "sum", s, value[0], norm)
            assert abs(math.sqrt(q) - math.sqrt(value[1])) <= GRAD_RTOL * norm, (
                where, "norm", q, value[1], norm)
        elif isinstance(value, dict):
            assert_step_close(got[key], value, where)
        elif isinstance(value, list) and value and isinstance(value[0], float):
            assert got[key] == pytest.approx(value, rel=LOSS_RTOL, abs=1e-7), where
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=LOSS_RTOL, abs=1e-7, nan_ok=True), where
        else:
            assert got[key] == value, where
