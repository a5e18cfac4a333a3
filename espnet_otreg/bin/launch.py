#!/usr/bin/env python3
"""Run a recipe's parallel jobs, or its training, locally or through Slurm.

The job backend of both recipes, in the spirit of Kaldi/ESPnet's ``run.pl`` and
``slurm.pl`` (the ESPnet wheel ships no ``cmd.sh`` backends). ``JOB`` in the log path
and in the command is replaced by the job number, 1..N::

    # N split jobs (collect stats, decoding, ...): in parallel on this machine ...
    python -m espnet_otreg.bin.launch --cmd local --nj 4 --log exp/dec/logs/decode.JOB.log -- \\
        python -m espnet_otreg.bin.asr_inference ... --output_dir exp/dec/output.JOB
    # ... or as one Slurm job array (``sbatch --wait --array 1-4``)
    python -m espnet_otreg.bin.launch --cmd slurm --nj 4 --partition cpu --time 2:00:00 \\
        --log exp/dec/logs/decode.JOB.log -- python -m espnet_otreg.bin.asr_inference ...

    # training: one Slurm task per GPU across --num_nodes, through srun, with ESPnet's
    # --dist_launcher slurm (2 nodes x 4 GPUs = 8 ranks)
    python -m espnet_otreg.bin.launch --cmd slurm --train --num_nodes 2 --gpus 4 \\
        --partition gpu --account myproj --time 2-00:00:00 --log exp/asr_train/train.log -- \\
        python -m espnet_otreg.bin.asr_train --config conf/train_asr_gmot.yaml ...

Behaviour:

- ``--cmd local``: N jobs run in parallel (at most ``--max_jobs_run`` at a time). With
  ``--train`` the command runs once as given (ESPnet's own
  ``--ngpu N --multiprocessing_distributed true`` spawns one process per GPU).
- ``--cmd slurm``: the N jobs are one job array submitted with ``sbatch --wait``
  (``%max_jobs_run`` throttles it); the call returns when every task has ended.
  ``--train`` submits one job of ``--num_nodes`` nodes with ``--gpus`` tasks a node
  (``--ntasks_per_node`` tasks for CPU training, ``--gpus 0``), whose batch script
  runs the command through ``srun`` with ``--ngpu 1`` (``0`` on CPU)
  ``--multiprocessing_distributed false --dist_launcher slurm`` appended (the last
  occurrence of an ESPnet option wins), ``--dist_backend nccl`` (``gloo`` on CPU), the
  first node of the allocation as ``--dist_master_addr``, a port derived from the job
  id as ``--dist_master_port`` and ``--dist_rank $SLURM_PROCID``. The rank has to be
  passed: ESPnet 202511's ``get_node_rank`` refuses ``--dist_launcher slurm`` with
  more than one task a node unless ``--dist_rank`` is given. GPUs are requested per
  node (``--gres gpu:G``), not bound per task, because ESPnet selects the device by
  ``SLURM_LOCALID`` among the GPUs it can see.
- Every job writes its log (``# command``, output, ``# Accounting: time=...``,
  ``# Ended (code C)``, as ``run.pl`` does). Job scripts are kept in ``<log dir>/q/``.
- Exit status 0 when every job succeeded; otherwise 1, with each failing job's number,
  exit code, log path and the tail of its log on stderr. A job killed by Slurm (time
  limit, node failure) has no ``# Ended`` line and counts as failed.
- Slurm options: ``--partition``, ``--account``, ``--time``, ``--gpus`` (per job; per
  node with ``--train``), ``--cpus_per_task``, ``--mem``, ``--qos``, ``--constraint``,
  ``--num_nodes``, and ``--sbatch_args "..."`` for anything else (split like a shell).

The command is everything after ``--``: several words are quoted for the shell; a single
word is taken as a shell command line (pipes and redirections allowed), as ``run.pl``
takes it. Interrupting the launcher (Ctrl-C) cancels a submitted Slurm job.

How the recipes use it: ``run.sh --cmd slurm --slurm_opts "--partition gpu --time
1-00:00:00"``; the stage library (``espnet_otreg/recipe/lib.sh``, ``_submit_job``) calls
this entry point once per split job of stages 10 and 12 (``--nj 1``, ``--gpus 1`` for a
GPU job) and once for the training of stage 11 (``--train --num_nodes N --gpus G``)::

    python -m espnet_otreg.bin.launch --cmd slurm --partition gpu --nj 1 \
        --log exp/x/decode.3.log -- python -m espnet_otreg.bin.asr_inference ...
    python -m espnet_otreg.bin.launch --cmd slurm --partition gpu --train \
        --num_nodes 2 --gpus 4 --log exp/x/train.log -- python -m espnet_otreg.bin.asr_train ...

With ``--cmd local`` the training command keeps its own ``--ngpu N
--multiprocessing_distributed true``; with ``--cmd slurm`` those are overridden as
described above. Tested against a real single-node Slurm: ``test/distributed/test_slurm.py``.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Sequence

ENDED = re.compile(r"^# Ended \(code (-?\d+)\)", re.M)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cmd", choices=["local", "slurm"], default="local")
    p.add_argument("--nj", type=int, default=1, help="number of jobs (JOB = 1..nj)")
    p.add_argument("--log", required=True, help="log file; must contain JOB if nj > 1")
    p.add_argument("--max_jobs_run", type=int, default=None,
                   help="at most this many jobs at a time (default: all)")
    p.add_argument("--train", action="store_true",
                   help="distributed training: one job, srun with one task per GPU")
    p.add_argument("--num_nodes", type=int, default=1, help="nodes for --train")
    p.add_argument("--gpus", type=int, default=0,
                   help="GPUs per job (per node with --train)")
    p.add_argument("--ntasks_per_node", type=int, default=1,
                   help="tasks per node with --train --gpus 0 (CPU training)")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--time", default=None, help="Slurm time limit, e.g. 2:00:00")
    p.add_argument("--cpus_per_task", type=int, default=None)
    p.add_argument("--mem", default=None, help="Slurm --mem, e.g. 16G")
    p.add_argument("--qos", default=None)
    p.add_argument("--constraint", default=None)
    p.add_argument("--job_name", default=None, help="default: the log's name")
    p.add_argument("--sbatch_args", default="", help="more sbatch options (shell words)")
    p.add_argument("--tail", type=int, default=20, help="log lines shown for a failed job")
    p.add_argument("--dry_run", action="store_true",
                   help="write the job scripts and print the submission, run nothing")
    return p


def _log(msg: str) -> None:
    print(f"launch: {msg}", file=sys.stderr, flush=True)


def command_line(words: Sequence[str], job: Optional[int]) -> str:
    """The shell command of one job: ``JOB`` replaced; one word = a shell line."""
    sub = (lambda w: w.replace("JOB", str(job))) if job is not None else (lambda w: w)
    if len(words) == 1:
        return sub(words[0])
    return shlex.join(sub(w) for w in words)


def job_script(cmd: str, log: Path, cwd: Path) -> str:
    """A bash script that runs ``cmd`` with ``run.pl``'s log header and footer."""
    q = shlex.quote
    return f"""#!/usr/bin/env bash
# written by espnet_otreg.bin.launch
cd {q(str(cwd))} || exit 1
log={q(str(log))}
mkdir -p "$(dirname "$log")"
echo "# "{q(cmd.replace(chr(10), "; "))} > "$log"
echo "# Started at $(date) on $(hostname)" >> "$log"
start=$(date +%s)
( {cmd}
) >> "$log" 2>&1
rc=$?
echo "# Accounting: time=$(( $(date +%s) - start )) threads=1" >> "$log"
echo "# Ended (code $rc) at $(date)" >> "$log"
exit $rc
"""


def train_command(words: Sequence[str], gpus: int) -> str:
    """The per-task training command for ``srun``: ESPnet's Slurm launcher options."""
    dist = ["--ngpu", "1" if gpus > 0 else "0", "--multiprocessing_distributed", "false",
            "--dist_launcher", "slurm", "--dist_backend", "nccl" if gpus > 0 else "gloo"]
    inner = (command_line(words, None) + " " + shlex.join(dist)
             + ' --dist_master_addr "$MASTER_ADDR" --dist_master_port "$MASTER_PORT"'
             + ' --dist_rank "$SLURM_PROCID"')
    # the rank must be expanded inside each task, hence bash -c
    return ('export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"\n'
            'export MASTER_PORT=$(( 20000 + SLURM_JOB_ID % 20000 ))\n'
            f"srun --kill-on-bad-exit=1 bash -c {shlex.quote('exec ' + inner)}")


def sbatch_options(a: argparse.Namespace, name: str, out: str) -> List[str]:
    opts = ["--parsable", "--wait", f"--job-name={name}", f"--output={out}"]
    for flag, value in (("--partition", a.partition), ("--account", a.account),
                        ("--time", a.time), ("--mem", a.mem), ("--qos", a.qos),
                        ("--constraint", a.constraint),
                        ("--cpus-per-task", a.cpus_per_task)):
        if value is not None:
            opts.append(f"{flag}={value}")
    if a.train:
        tasks = a.gpus if a.gpus > 0 else a.ntasks_per_node
        opts += [f"--nodes={a.num_nodes}", f"--ntasks-per-node={tasks}"]
    else:
        opts.append("--ntasks=1")
        if a.nj > 1 or "JOB" in a.log:
            throttle = f"%{a.max_jobs_run}" if a.max_jobs_run else ""
            opts.append(f"--array=1-{a.nj}{throttle}")
    if a.gpus > 0:
        opts.append(f"--gres=gpu:{a.gpus}")
    return opts + shlex.split(a.sbatch_args)


def report(jobs: Sequence[int], logs: Sequence[Path], tail: int) -> int:
    """0 if every log ends with ``# Ended (code 0)``; else 1 and the failures on stderr."""
    failed = []
    for job, log in zip(jobs, logs):
        text = log.read_text(errors="replace") if log.exists() else ""
        m = ENDED.findall(text)
        code = int(m[-1]) if m else None
        if code != 0:
            failed.append((job, code, log, text))
    for job, code, log, text in failed:
        why = f"exit code {code}" if code is not None else "no '# Ended' line (killed?)"
        lines = text.splitlines()[-tail:]
        _log(f"job {job} failed ({why}), log {log}; its last {len(lines)} lines:")
        for line in lines:
            print(f"    {line}", file=sys.stderr)
    if failed:
        _log(f"{len(failed)} of {len(jobs)} jobs failed")
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        get_parser().error("the command goes after '--'")
    cut = argv.index("--")
    a, words = get_parser().parse_args(argv[:cut]), argv[cut + 1:]
    if not words:
        get_parser().error("no command after '--'")
    if a.train and a.nj != 1:
        get_parser().error("--train runs one job (use --num_nodes / --gpus)")
    if a.nj > 1 and "JOB" not in a.log:
        get_parser().error("--log must contain JOB when --nj > 1")
    if a.cmd == "local" and a.num_nodes > 1:
        get_parser().error("--cmd local runs on this machine: --num_nodes must be 1")

    cwd = Path.cwd()
    jobs = list(range(1, a.nj + 1))
    with_job = "JOB" in a.log or a.nj > 1
    logs = [Path(a.log.replace("JOB", str(j))) if with_job else Path(a.log) for j in jobs]
    logs = [lg if lg.is_absolute() else cwd / lg for lg in logs]
    qdir = logs[0].parent / "q"
    qdir.mkdir(parents=True, exist_ok=True)
    stem = Path(a.log).name.replace(".JOB", "").replace("JOB", "").removesuffix(".log")
    name = a.job_name or stem
    scripts = []
    for job, log in zip(jobs, logs):
        if a.train and a.cmd == "slurm":
            cmd = train_command(words, a.gpus)
        else:
            cmd = command_line(words, job if with_job else None)
        script = qdir / (f"{name}.{job}.sh" if with_job else f"{name}.sh")
        script.write_text(job_script(cmd, log, cwd))
        script.chmod(0o755)
        scripts.append(script)
        log.unlink(missing_ok=True)  # a stale log must not pass for this run's

    if a.cmd == "local":
        if a.dry_run:
            for s in scripts:
                print(f"bash {shlex.quote(str(s))}")
            return 0
        start = time.time()
        with ThreadPoolExecutor(max_workers=a.max_jobs_run or len(scripts)) as pool:
            list(pool.map(lambda s: subprocess.run(["bash", str(s)]).returncode, scripts))
        rc = report(jobs, logs, a.tail)
        if rc == 0:
            _log(f"{len(jobs)} job(s) done in {time.time() - start:.0f} s, logs {logs[0]}")
        return rc

    # Slurm: one batch script for the job (array), which runs the job's own script
    if with_job and not a.train:
        body = f'exec bash {shlex.quote(str(qdir / name))}."$SLURM_ARRAY_TASK_ID".sh\n'
        out = str(qdir / f"{name}.%a.out")
    else:
        body = f"exec bash {shlex.quote(str(scripts[0]))}\n"
        out = str(qdir / f"{name}.out")
    batch = qdir / f"{name}.sbatch"
    batch.write_text("#!/usr/bin/env bash\n# written by espnet_otreg.bin.launch\n" + body)
    submit = ["sbatch", *sbatch_options(a, name, out), str(batch)]
    if a.dry_run:
        print(shlex.join(submit))
        return 0
    if shutil.which("sbatch") is None:
        _log("--cmd slurm needs Slurm's sbatch on PATH (not found); use --cmd local here")
        return 1
    _log(shlex.join(submit))
    start = time.time()
    with open(qdir / f"{name}.sbatch.err", "w+") as err:
        proc = subprocess.Popen(submit, stdout=subprocess.PIPE, stderr=err, text=True)
        job_id = "?"
        try:
            # --parsable: the job id comes first, right after submission
            job_id = (proc.stdout.readline().strip().split(";")[0]) or "?"
            proc.communicate()
        except KeyboardInterrupt:
            if job_id != "?":
                _log(f"interrupted: scancel {job_id}")
                subprocess.run(["scancel", job_id])
            proc.kill()
            raise
        err.seek(0)
        stderr = err.read()
    if not any(lg.exists() for lg in logs):
        _log(f"sbatch failed (code {proc.returncode}) and no job wrote its log:\n"
             f"{stderr.strip()}\n(Slurm's own output: {out.replace('%a', '*')})")
        return 1
    rc = report(jobs, logs, a.tail)
    if rc == 0:
        _log(f"Slurm job {job_id}: {len(jobs)} job(s) done in {time.time() - start:.0f} s")
    elif stderr.strip():
        _log(f"sbatch: {stderr.strip()}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
