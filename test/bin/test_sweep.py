"""sweep: grid parsing, run tags, the mean/sd table, RESULTS.md markers, plots, score
reading (the mini-recipe 2 x 2 run is in test/egs2)."""

import json
import math

import pytest

from espnet_otreg.bin import sweep
from espnet_otreg.recipe.results import put_sweep_block


def test_parse_grid_reads_yaml_values():
    grid = sweep.parse_grid(["alpha=0,0.02", "ws=null,5", "window_mode=zero,masked"])
    assert grid == {"alpha": [0, 0.02], "ws": [None, 5], "window_mode": ["zero", "masked"]}
    assert len(sweep.settings(grid)) == 8
    with pytest.raises(ValueError, match="key=v1,v2"):
        sweep.parse_grid(["alpha"])


def test_tag_is_a_safe_directory_name():
    assert sweep.tag_of("a b", {"alpha": 0.02, "ws": None}, 1) == "sweep_a-b_alpha0.02_wsnull_seed1"


def test_table_mean_sd_and_missing_runs():
    grid = {"alpha": [0, 0.1]}
    runs = [dict(setting={"alpha": 0}, seed=s, scores={"test": v}) for s, v in enumerate([10, 12, 14])]
    runs.append(dict(setting={"alpha": 0.1}, seed=0, scores=None))
    md = sweep.table(grid, runs, ["test"], "CER")
    assert "| 0 | 12.00 ± 2.00 (3) |" in md and "| 0.1 | - |" in md
    m, sd, n = sweep.mean_std([5.0])
    assert m == 5.0 and math.isnan(sd) and n == 1


def test_update_results_replaces_its_own_block(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\ntable\n")
    put_sweep_block(md, "a", "first\n")
    put_sweep_block(md, "b", "other\n")
    put_sweep_block(md, "a", "second\n")
    text = md.read_text()
    assert text.startswith("# Results\n\ntable\n") and "first" not in text
    assert text.count("<!-- sweep:a -->") == 1 and "second" in text and "other" in text


def test_plot_and_read_scores(tmp_path):
    grid = {"alpha": [0, 0.1], "mode": ["zero", "masked"]}
    runs = [dict(setting=s, seed=k, scores={"test": 10.0 + k}) for s in sweep.settings(grid)
            for k in range(2)]
    for key in grid:
        sweep.plot(tmp_path / f"{key}.png", key, grid, runs, "test", "CER")
        assert (tmp_path / f"{key}.png").stat().st_size > 1000
    exp = tmp_path / "exp"
    (exp / "dec/test/score").mkdir(parents=True)
    assert sweep.read_scores(exp, ["test"]) is None
    (exp / "dec/test/score/scores.json").write_text(json.dumps({"avg": 7.5}))
    assert sweep.read_scores(exp, ["test"]) == {"test": 7.5}


def test_stage_13_keeps_the_sweep_tables(tmp_path):
    """RESULTS.md is rewritten by every stage 13; the sweep blocks stay in it."""
    from espnet_otreg.recipe.results import write_results

    md = tmp_path / "RESULTS.md"
    write_results(md, title="t", intro=["first"], sections=["| a |"])
    put_sweep_block(md, "alpha", "### Sweep `alpha`\n\n| 0 | 1.00 |\n")
    write_results(md, title="t", intro=["second"], sections=["| b |"])
    text = md.read_text()
    assert "second" in text and "first" not in text and "| b |" in text
    assert text.count("<!-- sweep:alpha -->") == 1 and "| 0 | 1.00 |" in text
