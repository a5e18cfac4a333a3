"""Fixtures of the distributed tests: a single-node Slurm on localhost."""

import getpass
import os
import shutil
import subprocess
import sys
import time

import pytest

# ------------------------------------------------------------------ a local Slurm
SLURM_CONF = """\
ClusterName=otregtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/{auth}
CredType=cred/{auth}
SlurmUser={user}
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=30
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "srun", "sinfo", "scontrol")


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install_slurm():
    """apt-get install slurm-wlm (Debian/Ubuntu, as root); a reason string on failure."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "Slurm is not installed, and installing it needs apt-get and root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                 "slurm-wlm", "munge"]):
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} timed out"
        if r.returncode != 0:
            return f"{' '.join(cmd)} failed: {r.stderr[-500:]}"
    return None


def _start_munge(d):
    """munged with a fresh key in ``d`` (for a Slurm without auth/none)."""
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = d / "munge.socket"
    proc = subprocess.Popen(
        ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
         f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munge.seed"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, sock


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A single-node Slurm (slurmctld + slurmd) on localhost, for the whole session.

    Installs Debian's slurm-wlm when it is missing and apt-get and root are there.
    Auth: ``auth/none`` where this Slurm still has it (22.05, Debian 12), else munge
    with a throw-away key. Yields the environment for Slurm commands (``SLURM_CONF``
    points to the test cluster; free ports, so a real Slurm config is never touched).
    Skips with the reason when Slurm cannot be installed or started.
    """
    t0 = time.time()
    if any(shutil.which(b) is None for b in SLURM_BINARIES):
        why = _install_slurm()
        if why or any(shutil.which(b) is None for b in SLURM_BINARIES):
            pytest.skip(f"no Slurm for the Slurm tests: {why or 'binaries missing after install'}")
    t_install = time.time() - t0
    if os.geteuid() != 0:
        pytest.skip("the Slurm tests start slurmd, which needs root")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    procs = []
    env = None
    reason = "not started"
    auths = [os.environ.get("OTREG_TEST_SLURM_AUTH")] if os.environ.get("OTREG_TEST_SLURM_AUTH") \
        else ["none", "munge"]
    for auth in auths:
        conf = d / f"slurm.{auth}.conf"
        conf.write_text(SLURM_CONF.format(
            host=os.uname().nodename.split(".")[0], ctld_port=_free_port(), d_port=_free_port(),
            auth=auth, user=getpass.getuser(), d=d, cpus=os.cpu_count() or 1))
        env = dict(os.environ, SLURM_CONF=str(conf))
        if auth == "munge":
            if shutil.which("munged") is None:
                reason += "; munged not installed"
                continue
            munged, sock = _start_munge(d)
            procs.append(munged)
            # Slurm talks to munged's default socket unless AuthInfo names one
            conf.write_text(conf.read_text().replace(
                "AuthType=auth/munge", f"AuthType=auth/munge\nAuthInfo=socket={sock}"))
        for daemon in ("slurmctld", "slurmd"):
            procs.append(subprocess.Popen([daemon, "-D"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            state = r.stdout.strip()
            if state == "idle":
                break
            time.sleep(1)
        if state == "idle":
            break
        logs = "".join(
            f"\n--- {f.name}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-8:])
            for f in sorted(d.glob("*.log")))
        reason = f"auth/{auth}: node state {state!r} after start{logs}"
        _stop(procs)
        procs = []
    else:
        pytest.skip(f"Slurm could not be started: {reason}")
    started = time.time() - t0
    (d / "timing.txt").write_text(f"install {t_install:.1f} s, install+start {started:.1f} s\n")
    print(f"\n[slurm fixture] install {t_install:.1f} s, install+start {started:.1f} s "
          f"({conf})", file=sys.stderr)
    yield env  # (a dict: SLURM_CONF and the rest of os.environ)
    subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True, timeout=30)
    _stop(procs)


def _stop(procs):
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
