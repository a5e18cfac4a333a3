"""espnet_otreg.bin.launch --cmd slurm against a real single-node Slurm on localhost
(the ``slurm`` fixture of conftest.py; skipped with the reason where there is none):
split jobs as a job array, a failing job reported with its log, a 2-task CPU training
through srun with ESPnet's --dist_launcher slurm, and ./run.sh --cmd slurm stages 10-12
of the AISHELL mini recipe (collect stats and decoding as sbatch jobs)."""

import sys

import pytest
from dist_helpers import child_env, gmot_train_args
from test_launch import WRITE, launch

pytestmark = pytest.mark.slow


def slurm_env(slurm):
    return child_env(SLURM_CONF=slurm["SLURM_CONF"])


def test_split_jobs_as_a_job_array(slurm, tmp_path):
    r = launch("--cmd", "slurm", "--nj", 3, "--time", "0:05:00", "--log", "logs/w.JOB.log",
               "--", sys.executable, "-c", WRITE, "JOB", cwd=tmp_path, env=slurm_env(slurm))
    assert r.returncode == 0, r.stderr
    assert "Slurm job" in r.stderr and "3 job(s) done" in r.stderr
    for j in (1, 2, 3):
        assert (tmp_path / f"out.{j}").read_text() == str(j)
        log = (tmp_path / f"logs/w.{j}.log").read_text()
        assert f"job {j} array task {j}" in log and "# Ended (code 0)" in log


def test_failing_job_is_reported_with_its_log_tail(slurm, tmp_path):
    r = launch("--cmd", "slurm", "--nj", 3, "--log", "logs/w.JOB.log", "--",
               sys.executable, "-c", WRITE, "JOB", "2", cwd=tmp_path, env=slurm_env(slurm))
    assert r.returncode == 1
    assert "job 2 failed (exit code 3)" in r.stderr
    assert "job 2 array task 2" in r.stderr  # the tail of its log
    assert "job 1 failed" not in r.stderr and "1 of 3 jobs failed" in r.stderr


def test_bad_submission_is_reported(slurm, tmp_path):
    r = launch("--cmd", "slurm", "--partition", "no_such_partition", "--log", "logs/x.log",
               "--", "true", cwd=tmp_path, env=slurm_env(slurm))
    assert r.returncode == 1 and "sbatch failed" in r.stderr and "partition" in r.stderr


def test_two_task_training_through_srun(slurm, tmp_path):
    """Stage 11's Slurm launch on the mini GM-OT config: a 2-task CPU training through
    srun with --dist_launcher slurm (collect stats and decoding as sbatch job arrays,
    and training through run.sh, are in test_aishell_mini_recipe_stages_10_to_12...)."""
    env = slurm_env(slurm)
    args = gmot_train_args(tmp_path, max_epoch=1)
    r = launch("--cmd", "slurm", "--train", "--ntasks_per_node", 2, "--gpus", 0,
               "--time", "0:10:00", "--log", "exp/train.log", "--",
               sys.executable, "-m", "espnet_otreg.bin.asr_train", *args, "--num_workers", 0,
               cwd=tmp_path, env=env)
    log = (tmp_path / "exp/train.log").read_text()
    assert r.returncode == 0, r.stderr + log[-4000:]
    assert "0/2]" in log, "rank 0 of 2 did not log: not a 2-task run"
    assert "--dist_launcher slurm" in log.splitlines()[0]
    assert "1epoch results" in log and "# Ended (code 0)" in log
    assert (tmp_path / "exp/1epoch.pth").exists()


def test_recipe_job_runner_through_slurm(slurm, tmp_path):
    """The recipes' run_jobs --cmd slurm (what stages 10 and 12 call): split, one
    sbatch --wait job per part, merge; a failing part stops it with its log tail."""
    import subprocess

    from espnet_otreg.recipe import LIB_SH

    (tmp_path / "wav.scp").write_text("".join(f"u{i} /x/{i}.wav\n" for i in range(5)))
    env = dict(slurm_env(slurm), PYTHON=sys.executable)
    script = (f'set -euo pipefail; . "{LIB_SH}"; slurm_opts="--time 0:05:00"; '
              'run_jobs --cmd slurm --nj 2 --name demo --split wav.scp out/keys.JOB.scp '
              '--log out/job.JOB.log --merge out/res.JOB out/res -- '
              'bash -c "sed \'s/ .*/ done/\' out/keys.JOB.scp > out/res.JOB; exit $FAIL"')
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=dict(env, FAIL="0"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/res").read_text() == "".join(f"u{i} done\n" for i in range(5))
    assert "demo: 2 jobs running (slurm)" in r.stderr
    assert "# Ended (code 0)" in (tmp_path / "out/job.1.log").read_text()
    r = subprocess.run(["bash", "-c", script.replace("out/", "bad/")], cwd=tmp_path,
                       env=dict(env, FAIL="3"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "demo failed" in r.stderr, r.stderr


def test_aishell_mini_recipe_stages_10_to_12_with_cmd_slurm(slurm, tmp_path):
    """./run.sh --cmd slurm on the AISHELL mini recipe: collect stats and decoding as
    sbatch jobs, training as a Slurm job through srun with --dist_launcher slurm."""
    import shutil
    import subprocess
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "egs2/aishell_gmot/asr1"
    work = tmp_path / "asr1"
    work.mkdir()
    for name in ("run.sh", "path.sh", "conf", "local"):
        (shutil.copytree if (recipe / name).is_dir() else shutil.copy2)(recipe / name, work / name)
    env = dict(slurm_env(slurm), PYTHON=sys.executable)
    common = ["--mini", "true", "--asr_args", "--max_epoch 1", "--test_sets", "test",
              "--inference_config", "conf/mini/decode_ctc_greedy.yaml"]
    r = subprocess.run(["bash", "run.sh", "--stage", "1", "--stop_stage", "6", *common],
                       cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(["bash", "run.sh", "--stage", "10", "--stop_stage", "12", *common,
                        "--cmd", "slurm", "--slurm_opts", "--time 0:15:00"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "collect stats: 2 jobs running (slurm)" in r.stderr
    exp = work / "mini/exp"
    logdir = exp / "asr_stats_raw_zh_char_sp/logdir"
    assert "# Ended (code 0)" in (logdir / "stats.1.log").read_text()
    assert "sbatch --parsable --wait" in (logdir / "stats.1.log.submit").read_text()
    train_log = (exp / "asr_train_asr_gmot/train.log").read_text()
    assert "srun" in train_log.splitlines()[0] and "--dist_launcher slurm" in train_log
    assert "1epoch results" in train_log
    decoded = list(exp.glob("asr_train_asr_gmot/*/test/text"))
    assert decoded and decoded[0].read_text().strip()
