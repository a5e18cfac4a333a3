"""espnet_otreg/recipe/lib.sh, the stage library both run.sh source: options, the job
runner (split, N jobs, failing job's log tail, merge) and the training launch with its
progress view (no race with the creation of the log)."""

import os
import subprocess
import sys
from pathlib import Path

from espnet_otreg.recipe import LIB_SH

REPO = Path(__file__).resolve().parents[2]


def _bash(script, cwd, *args):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO))
    return subprocess.run(["bash", "-c", f"set -euo pipefail; . '{LIB_SH}'; {script}", "run.sh", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_parse_options(tmp_path):
    r = _bash('stage=1; my_opt=a; parse_options "$@"; echo "$stage $my_opt"', tmp_path,
              "--stage", "3", "--my-opt=b c")
    assert r.returncode == 0 and r.stdout == "3 b c\n", r.stderr
    r = _bash('stage=1; parse_options "$@"', tmp_path, "--nope", "1")
    assert r.returncode == 1 and "unknown option --nope" in r.stderr
    r = _bash('stage=1; parse_options "$@"', tmp_path, "--stage")
    assert r.returncode == 1 and "needs a value" in r.stderr


def test_run_jobs_split_run_merge(tmp_path):
    (tmp_path / "wav.scp").write_text("".join(f"u{i} /x/{i}.wav\n" for i in range(5)))
    r = _bash('run_jobs --nj 8 --name demo --split wav.scp out/keys.JOB.scp --log out/job.JOB.log '
              '--merge out/res.JOB out/res -- '
              'bash -c \'sed "s/ .*/ done/" out/keys.JOB.scp > out/res.JOB\'; echo "nj=$RUN_JOBS_NJ"',
              tmp_path)
    assert r.returncode == 0, r.stderr
    assert "nj=5" in r.stdout  # no more jobs than lines
    assert (tmp_path / "out/res").read_text() == "".join(f"u{i} done\n" for i in range(5))
    assert "demo: 5 jobs done" in r.stderr


def test_run_jobs_reports_the_failing_job(tmp_path):
    (tmp_path / "wav.scp").write_text("a 1\nb 2\nc 3\n")
    r = _bash('run_jobs --nj 3 --name decode --split wav.scp k.JOB --log log.JOB -- '
              'bash -c \'echo "line of job JOB"; [ JOB != 2 ] || { echo "boom in job 2"; exit 3; }\'',
              tmp_path)
    assert r.returncode == 1
    assert "1 of 3 jobs failed (jobs 2)" in r.stderr and "boom in job 2" in r.stderr
    assert "decode failed: see log.2" in r.stderr


def test_run_jobs_unknown_backend(tmp_path):
    r = _bash("run_jobs --cmd sge --nj 1 --log l.JOB -- true", tmp_path)
    assert r.returncode == 1 and "--cmd sge: unknown job backend (supported: local, slurm)" in r.stderr


def test_slurm_backend_submits_through_launch(tmp_path):
    """--cmd slurm: each split job is one launch --cmd slurm --nj 1 submission (a GPU job
    asks for one GPU), training one launch --train of --num_nodes x --ngpu, with
    run.sh's --slurm_opts, all passed as arguments (the real Slurm runs are in
    test/distributed/test_slurm.py)."""
    stub = tmp_path / "python"
    stub.write_text('#!/bin/sh\necho "$*" >> calls.txt\n')
    stub.chmod(0o755)
    r = _bash(f'PYTHON={stub}; opts="--partition gpu --time 1:00:00"; '
              'run_jobs --cmd slurm --slurm_opts "${opts}" --nj 2 --gpu false --log logs/j.JOB.log -- echo JOB; '
              'run_training --cmd slurm --slurm_opts "${opts}" --num_nodes 2 --ngpu 4 logs/train.log '
              '-- python -m x --ngpu 4', tmp_path)
    assert r.returncode == 0, r.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    head = "-m espnet_otreg.bin.launch --cmd slurm --partition gpu --time 1:00:00"
    assert sorted(calls[:2]) == [f"{head} --nj 1 --log logs/j.{j}.log -- echo {j}" for j in (1, 2)]
    assert calls[2] == (f"{head} --train --num_nodes 2 --gpus 4 --log logs/train.log -- "
                        "python -m x --ngpu 4")


def test_run_training_progress_has_no_log_race(tmp_path):
    """A trainer that writes its epoch lines at once: the view shows them all, with no
    'cannot open' from tail; a second run keeps the first log as train.1.log."""
    trainer = ("for e in 1 2 3; do echo \"x ${e}epoch results: [train] loss=1 [valid] "
               "loss=0.${e}\"; done")
    for _ in range(2):
        r = _bash(f"run_training exp/a/train.log -- bash -c '{trainer}'", tmp_path)
        assert r.returncode == 0, r.stderr
        assert "cannot open" not in r.stderr
        for e in (1, 2, 3):
            assert f"{e}epoch valid: loss=0.{e}" in r.stderr
    assert (tmp_path / "exp/a/train.1.log").is_file()
    r = _bash("run_training exp/b/train.log -- bash -c 'echo RuntimeError: bad; exit 2'", tmp_path)
    assert r.returncode == 1 and "training failed (exit 2)" in r.stderr
    assert "RuntimeError: bad" in r.stderr


def test_run_sweep_hands_the_grid_and_the_other_options_to_the_sweep_tool(tmp_path):
    """run.sh --sweep "k=v1,v2 ..." --sweep_seeds "..": espnet_otreg.bin.sweep gets the
    grid, seeds, stages 11-13 and every other option of the command line as --run_args
    (the ones the sweep sets itself left out)."""
    stub = tmp_path / "python"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n')
    stub.chmod(0o755)
    r = _bash(f'PYTHON={stub}; stage=1; stop_stage=16; sweep=; sweep_seeds=0; sweep_jobs=1; '
              'test_sets="dev test"; parse_options "$@"; '
              'run_sweep --config conf/a.yaml --expdir exp --results_md RESULTS.md '
              '--grid "${sweep}" --seeds "${sweep_seeds}" --jobs "${sweep_jobs}" '
              '--stop_stage "${stop_stage}" --sets "${test_sets}" -- "$@"', tmp_path,
              "--stage", "11", "--sweep", "alpha=0,0.02 rho=0,0.5", "--sweep_seeds", "0 1",
              "--stop_stage", "16", "--sweep_jobs", "4")
    assert r.returncode == 0, r.stderr
    args = [a[1:-1] for a in r.stdout.splitlines()]
    assert args[:2] == ["-m", "espnet_otreg.bin.sweep"]
    for opt, value in (("--config", "conf/a.yaml"), ("--stages", "11-13"), ("--expdir", "exp"),
                       ("--results_md", "RESULTS.md"), ("--run_args", ""), ("--jobs", "4"),
                       ("--gpus_per_job", "0")):
        assert args[args.index(opt) + 1] == value, (opt, args)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--grid"] == ["alpha=0,0.02", "rho=0,0.5"]
    seeds = args.index("--seeds")
    assert args[seeds + 1 : seeds + 3] == ["0", "1"]
    sets = args.index("--sets")
    assert args[sets + 1 : sets + 3] == ["dev", "test"]
    r = _bash(f'PYTHON={stub}; stage=1; stop_stage=12; sweep=; sweep_seeds=0; test_sets=test; '
              'mini=false; asr_args=; parse_options "$@"; run_sweep --config c.yaml --expdir e '
              '--results_md R.md --grid "${sweep}" --seeds "${sweep_seeds}" '
              '--stop_stage "${stop_stage}" --sets "${test_sets}" -- "$@"',
              tmp_path, "--sweep", "lambda_=0,0.3", "--stop_stage", "12", "--mini", "true",
              "--asr_args", "--max_epoch 1")
    args = [a[1:-1] for a in r.stdout.splitlines()]
    assert args[args.index("--stages") + 1] == "11-12"
    assert args[args.index("--run_args") + 1] == "--mini true --asr_args --max_epoch\\ 1 "
