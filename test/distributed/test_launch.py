"""espnet_otreg.bin.launch without a cluster: --cmd local, and what --cmd slurm submits."""

import subprocess
import sys

from dist_helpers import child_env

WRITE = ("import os, sys; j = sys.argv[1]; open(f'out.{j}', 'w').write(j); "
         "print('job', j, 'array task', os.environ.get('SLURM_ARRAY_TASK_ID')); "
         "sys.exit(3 if j in sys.argv[2:] else 0)")


def launch(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "espnet_otreg.bin.launch", *map(str, args)],
                          cwd=cwd, env=env or child_env(), capture_output=True, text=True,
                          timeout=300)


def test_local_runs_every_job(tmp_path):
    r = launch("--nj", 3, "--log", "logs/w.JOB.log", "--", sys.executable, "-c", WRITE, "JOB",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        assert (tmp_path / f"out.{j}").read_text() == str(j)
        log = (tmp_path / f"logs/w.{j}.log").read_text()
        assert f"job {j} array task None" in log and "# Ended (code 0)" in log
    assert (tmp_path / "logs/q/w.2.sh").exists()


def test_local_failure_names_the_job_and_shows_its_log(tmp_path):
    r = launch("--nj", 3, "--max_jobs_run", 2, "--log", "logs/w.JOB.log", "--",
               sys.executable, "-c", WRITE, "JOB", "2", cwd=tmp_path)
    assert r.returncode == 1
    assert "job 2 failed (exit code 3)" in r.stderr and "job 2 array task None" in r.stderr
    assert "job 1 failed" not in r.stderr and "1 of 3 jobs failed" in r.stderr
    assert all((tmp_path / f"out.{j}").exists() for j in (1, 2, 3))


def test_single_word_is_a_shell_line(tmp_path):
    r = launch("--log", "logs/sh.log", "--", "echo a | tr a b > piped.txt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "piped.txt").read_text() == "b\n"


def test_bad_usage(tmp_path):
    assert launch("--nj", 2, "--log", "x.log", "--", "true", cwd=tmp_path).returncode == 2
    assert launch("--log", "x.log", "true", cwd=tmp_path).returncode == 2
    r = launch("--num_nodes", 2, "--train", "--log", "x.log", "--", "true", cwd=tmp_path)
    assert r.returncode == 2


def test_slurm_dry_run_split_jobs(tmp_path):
    r = launch("--cmd", "slurm", "--nj", 4, "--max_jobs_run", 2, "--partition", "cpu",
               "--account", "proj", "--time", "1:00:00", "--mem", "4G", "--gpus", 1,
               "--sbatch_args", "--exclude=n1 --nice", "--log", "logs/dec.JOB.log", "--dry_run",
               "--", "python", "-m", "x", "--output_dir", "out/JOB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    sub = r.stdout.split()
    assert sub[0] == "sbatch" and "--wait" in sub and "--array=1-4%2" in sub
    for opt in ("--partition=cpu", "--account=proj", "--time=1:00:00", "--mem=4G",
                "--gres=gpu:1", "--exclude=n1", "--nice", "--ntasks=1"):
        assert opt in sub, opt
    batch = (tmp_path / "logs/q/dec.sbatch").read_text()
    assert '"$SLURM_ARRAY_TASK_ID".sh' in batch
    assert "python -m x --output_dir out/3" in (tmp_path / "logs/q/dec.3.sh").read_text()


def test_slurm_dry_run_training(tmp_path):
    r = launch("--cmd", "slurm", "--train", "--num_nodes", 2, "--gpus", 4, "--partition", "gpu",
               "--log", "exp/train.log", "--dry_run", "--",
               "python", "-m", "espnet_otreg.bin.asr_train", "--ngpu", 4, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    sub = r.stdout.split()
    assert "--nodes=2" in sub and "--ntasks-per-node=4" in sub and "--gres=gpu:4" in sub
    assert not any(s.startswith("--array") for s in sub)
    script = (tmp_path / "exp/q/train.sh").read_text()
    assert "srun --kill-on-bad-exit=1 bash -c" in script
    for part in ("--ngpu 1", "--multiprocessing_distributed false", "--dist_launcher slurm",
                 "--dist_backend nccl", '--dist_rank "$SLURM_PROCID"', "MASTER_PORT"):
        assert part in script, part


def test_slurm_without_sbatch_says_so(tmp_path):
    env = child_env(PATH=str(tmp_path / "nothing"))
    r = subprocess.run([sys.executable, "-m", "espnet_otreg.bin.launch",
                        "--cmd", "slurm", "--log", "x.log", "--", "true"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "needs Slurm's sbatch" in r.stderr


def test_a_job_without_its_end_line_counts_as_failed(tmp_path, capsys):
    """What a job killed by Slurm (time limit, node failure) leaves: no '# Ended' line."""
    from espnet_otreg.bin.launch import report

    logs = [tmp_path / "a.1.log", tmp_path / "a.2.log", tmp_path / "a.3.log"]
    logs[0].write_text("# cmd\nok\n# Ended (code 0) at now\n")
    logs[1].write_text("# cmd\nstep 41\nslurmstepd: *** JOB 7 CANCELLED DUE TO TIME LIMIT ***\n")
    assert report([1, 2, 3], logs, tail=5) == 1
    err = capsys.readouterr().err
    assert "job 2 failed (no '# Ended' line (killed?))" in err and "TIME LIMIT" in err
    assert "job 3 failed" in err and "job 1 failed" not in err  # 3: no log at all
