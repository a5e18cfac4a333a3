"""local/coupling_diagnostics.py: the CTC forced alignment and the plan metrics on
hand-made inputs whose answers are known."""

from pathlib import Path

import numpy as np
import pytest
from recipe_helpers import load_local

RECIPE = Path(__file__).resolve().parents[2] / "egs2/aishell_gmot/asr1"


def _load():
    return load_local(RECIPE, "coupling_diagnostics")


def _posteriors(frames, vocab=5, peak=0.9):
    """(T, V) log-posteriors whose best token per frame is ``frames[t]``."""
    lp = np.full((len(frames), vocab), (1 - peak) / (vocab - 1))
    lp[np.arange(len(frames)), frames] = peak
    return np.log(lp)


def test_forced_alignment_finds_first_emissions_and_repeats():
    mod = _load()
    # blank 0; labels 3 3 1: the repeated 3 needs a blank between its two emissions
    lp = _posteriors([0, 3, 3, 0, 3, 0, 0, 1, 1, 0])
    assert mod.ctc_forced_align(lp, [3, 3, 1]).tolist() == [1, 4, 7]
    # the path is forced onto the transcript even where another token is likelier
    assert mod.ctc_forced_align(lp, [2]).tolist()[0] in range(10)
    with pytest.raises(ValueError, match="cannot hold"):
        mod.ctc_forced_align(_posteriors([0, 3]), [3, 3])


def test_plan_metrics_of_a_perfect_and_a_uniform_plan():
    mod = _load()
    first = np.array([0, 2, 4])
    hard = np.zeros((6, 3))
    hard[[0, 1], 0] = hard[[2, 3], 1] = hard[[4, 5], 2] = 1 / 6
    m = mod.plan_metrics(hard, first, slack=0)
    assert m["on_target"] == pytest.approx(1.0) and m["monotonic"] == 1.0
    assert m["perplexity"] == pytest.approx(1.0)
    flat = np.full((6, 3), 1 / 18)
    m = mod.plan_metrics(flat, first, slack=0)
    assert m["on_target"] == pytest.approx(1 / 3) and m["perplexity"] == pytest.approx(3.0)


def test_settings_parse():
    mod = _load()
    assert mod.parse_setting("trained") == ("trained", {})
    assert mod.parse_setting("r:epsilon=0.1,epsilon_mode=relative") == (
        "r", {"epsilon": 0.1, "epsilon_mode": "relative"})
    with pytest.raises(ValueError, match="name:key=value"):
        mod.parse_setting("r:epsilon")
