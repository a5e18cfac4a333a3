"""Fixtures and helpers for the distributed tests (torchrun on CPU, a local Slurm).

The GM-OT and SLM helpers of ``test/asr`` and ``test/slm`` are reused, not copied:
their folders go on ``sys.path`` here, as pytest does for the tests next to them.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for _d in (ROOT / "test" / "asr", ROOT / "test" / "slm"):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))


def child_env(**extra):
    """Environment of a child process: this checkout first, offline, one thread."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(
                   [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_group(cmd, cwd, env, timeout):
    """``subprocess.run`` in a new session; on timeout the whole group is killed (a hung
    collective leaves torchrun's workers behind otherwise) and the test fails."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[:6]} did not finish in {timeout} s (a hung collective?):\n"
                    f"{out[-2000:]}\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def torchrun(probe_dir, module, args, cwd, nproc=2, timeout=420):
    """``torchrun --standalone --nproc_per_node N`` of a training CLI through the probe."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc_per_node", str(nproc), str(HERE / "ddp_probe.py"), str(probe_dir), module,
           *map(str, args)]
    r = run_group(cmd, cwd, child_env(), timeout)
    assert r.returncode == 0, f"torchrun {module} failed:\n{r.stdout[-3000:]}\n{r.stderr[-8000:]}"
    return r
