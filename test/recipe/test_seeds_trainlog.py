"""espnet_otreg.recipe.seeds.bootstrap_diff and espnet_otreg.recipe.trainlog."""

import numpy as np
import pytest

from espnet_otreg.recipe.seeds import bootstrap_diff
from espnet_otreg.recipe.trainlog import run_curve, valid_curve


def test_bootstrap_difference_and_interval():
    rng = np.random.default_rng(0)
    n_ref = rng.integers(5, 15, size=300)
    b = rng.binomial(n_ref, 0.10, size=(3, 300))
    a = rng.binomial(n_ref, 0.05, size=(3, 300))  # A clearly better, on every seed
    r = bootstrap_diff(a, b, n_ref, n_boot=500)
    assert r["diff"] == pytest.approx(100 * (a - b).sum() / (3 * n_ref.sum()))
    assert r["lo"] < r["diff"] < r["hi"] < 0 and r["p_ge_0"] == 0.0 and r["p_le_0"] == 1.0
    # the same system twice: no difference, an interval around 0
    same = bootstrap_diff(b, b, n_ref, n_boot=200)
    assert same["diff"] == same["lo"] == same["hi"] == 0.0
    # deterministic for a seed
    assert bootstrap_diff(a, b, n_ref, n_boot=200, seed=3) == bootstrap_diff(a, b, n_ref, n_boot=200, seed=3)


def test_bootstrap_shapes_are_checked():
    with pytest.raises(ValueError, match="runs, utterances"):
        bootstrap_diff([[1, 2]], [[1, 2, 3]], [3, 3])
    with pytest.raises(ValueError, match="len\\(n_ref\\)"):
        bootstrap_diff([[1, 2]], [[1, 2]], [3, 3, 3])


def _line(epoch, acc):
    return (f"[vm] 2026 (trainer:1) INFO: {epoch}epoch results: [train] loss=1.0, "
            f"[valid] acc={acc}, loss=2.0, note=n/a\n")


def test_valid_curve_and_rotated_logs(tmp_path):
    (tmp_path / "train.2.log").write_text(_line(1, 0.1) + _line(2, 0.2))
    (tmp_path / "train.1.log").write_text(_line(2, 0.25) + _line(3, 0.3))
    (tmp_path / "train.log").write_text("no epoch line\n")
    assert valid_curve(tmp_path / "train.2.log")[2] == {"acc": 0.2, "loss": 2.0}
    assert [e["acc"] for e in run_curve(tmp_path)] == pytest.approx([0.1, 0.25, 0.3])
    assert valid_curve(tmp_path / "absent.log") == {}
