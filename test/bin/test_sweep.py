"""sweep: grid parsing, run tags, the mean/sd table, RESULTS.md markers, plots, score
reading (the mini-recipe 2 x 2 run is in test/egs2)."""

import json
import math
from pathlib import Path

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
    _describe(tmp_path)
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


def _describe(recipe):
    """The recipe's own description, as egs2/fleurs_otreg/asr1/local/recipe.yaml."""
    (recipe / "local").mkdir(exist_ok=True)
    (recipe / "local/recipe.yaml").write_text(
        "exp_prefix: slm_\nmetric: WER\nscore_file: score/scores.json\n")


FAKE_RUN_SH = r"""#!/usr/bin/env bash
while [ $# -gt 0 ]; do case "$1" in --asr_tag) tag=$2; shift 2 ;; --asr_args) a=$2; shift 2 ;; *) shift ;; esac; done
seed=${a##*--seed }
echo "start $(date +%s.%N) ${tag} ${CUDA_VISIBLE_DEVICES:-none}" >> events.txt
sleep 1
[ "${seed}" = 9 ] && { echo "boom ${tag}"; exit 3; }
mkdir -p "exp/slm_${tag}/dec/test/score"
echo "{\"avg\": ${seed}}" > "exp/slm_${tag}/dec/test/score/scores.json"
echo "end $(date +%s.%N) ${tag}" >> events.txt
"""


def _fake_recipe(tmp_path):
    (tmp_path / "run.sh").write_text(FAKE_RUN_SH)
    (tmp_path / "run.sh").chmod(0o755)
    _describe(tmp_path)
    return tmp_path


def test_jobs_run_in_parallel_on_their_own_gpus(tmp_path):
    """--jobs 2 --gpus_per_job 1: two runs at a time, slot i sees GPU i only, each
    run's output in its own log; the table has every run."""
    recipe = _fake_recipe(tmp_path)
    out = sweep.main(["--recipe_dir", str(recipe), "--config", "c.yaml", "--grid", "alpha=0,1",
                      "--seeds", "0", "1", "--sets", "test", "--jobs", "2",
                      "--gpus_per_job", "1", "--name", "par"])
    assert [r["scores"]["test"] for r in out["runs"]] == [0, 1, 0, 1]
    events = [ln.split() for ln in (recipe / "events.txt").read_text().splitlines()]
    assert {e[3] for e in events if e[0] == "start"} == {"0", "1"}
    # at most 2 at a time, and 2 at some time
    t = sorted((float(e[1]), 1 if e[0] == "start" else -1) for e in events)
    live = [sum(d for _, d in t[: i + 1]) for i in range(len(t))]
    assert max(live) == 2
    assert len(list((recipe / "exp/sweep_par/logs").glob("*.log"))) == 4
    # finished runs are skipped the second time
    sweep.main(["--recipe_dir", str(recipe), "--config", "c.yaml", "--grid", "alpha=0,1",
                "--seeds", "0", "1", "--sets", "test", "--jobs", "2", "--name", "par"])
    assert len((recipe / "events.txt").read_text().splitlines()) == len(events)


def test_a_failing_parallel_run_stops_the_sweep_and_names_its_log(tmp_path):
    recipe = _fake_recipe(tmp_path)
    with pytest.raises(SystemExit, match=r"run sweep_bad_seed9 failed \(exit 3\).*logs/sweep_bad_seed9.log"):
        sweep.main(["--recipe_dir", str(recipe), "--config", "c.yaml", "--seeds", "9", "1",
                    "--sets", "test", "--jobs", "2", "--name", "bad"])
    assert "boom" in (recipe / "exp/sweep_bad/logs/sweep_bad_seed9.log").read_text()
    # the run that was going on finished and kept its scores
    assert sweep.read_scores(recipe / "exp/slm_sweep_bad_seed1", ["test"]) == {"test": 1}
    with pytest.raises(SystemExit, match="--jobs"):
        sweep.main(["--recipe_dir", str(recipe), "--config", "c.yaml", "--jobs", "0"])


def test_recipe_info_is_validated_and_read_options_in_both_spellings(tmp_path):
    from espnet_otreg.recipe.info import RecipeInfo, RecipeInfoError

    repo = Path(__file__).resolve().parents[2]
    aishell = RecipeInfo.load(repo / "egs2/aishell_gmot/asr1")
    fleurs = RecipeInfo.find(repo / "egs2/fleurs_otreg/asr1/exp/slm_x")
    assert (aishell.exp_prefix, aishell.metric) == ("asr_", "CER")
    assert (fleurs.exp_prefix, fleurs.metric, fleurs.mini_dir) == ("slm_", "WER", "mini")
    with pytest.raises(RecipeInfoError, match="missing"):
        RecipeInfo.load(tmp_path)
    (tmp_path / "local").mkdir()
    (tmp_path / "local/recipe.yaml").write_text("exp_prefix: asr_\nmetric: CER\n"
                                               "score_file: s/result.txt\nexpdir: exp\n")
    with pytest.raises(RecipeInfoError, match=r"unknown key\(s\) \['expdir'\]"):
        RecipeInfo.load(tmp_path)
    assert sweep.run_sh_option(["--mini=true"], "mini") == "true"
    assert sweep.run_sh_option(["--mini", "true", "--ngpu", "0"], "mini") == "true"
    assert sweep.run_sh_option(["--mini", "true", "--mini=false"], "mini") == "false"
    assert sweep.run_sh_option(["--ngpu", "0"], "mini") is None


def test_mini_in_either_spelling_selects_the_mini_expdir(tmp_path):
    """run.sh accepts --mini=true as well as --mini true; the sweep must read the same
    expdir either way (it used to look in exp/ for --mini=true)."""
    recipe = _fake_recipe(tmp_path)
    fake = (recipe / "run.sh").read_text().replace('"exp/slm_', '"mini/exp/slm_')
    (recipe / "run.sh").write_text(fake)
    for spelling in ("--mini true", "--mini=true"):
        out = sweep.main(["--recipe_dir", str(recipe), "--config", "c.yaml", "--seeds", "3",
                          "--sets", "test", "--name", "m", f"--run_args={spelling}"])
        assert out["runs"][0]["scores"] == {"test": 3}
    assert "Sweep `m`" in (recipe / "mini/RESULTS.md").read_text()
