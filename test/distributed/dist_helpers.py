"""Helpers for the distributed tests: torchrun runs, the mini GM-OT training job.

The GM-OT and SLM helpers of ``test/asr`` and ``test/slm`` are reused, not copied:
their folders go on ``sys.path`` here, as pytest does for the tests next to them.
"""

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for _d in (ROOT / "test" / "asr", ROOT / "test" / "slm"):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))


def child_env(**extra):
    """Environment of a child process: this checkout first, offline, one thread."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + paths))
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


# ------------------------------------------------------------------ training jobs
DIST = ["--ngpu", 0, "--dist_backend", "gloo", "--multiprocessing_distributed", "false",
        "--num_workers", 0]
TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def write_shapes(data, out):
    """ESPnet's ``speech_shape`` (samples per utterance), without a collect-stats run."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in sorted((data / "wav.scp").read_text().splitlines()):
        uid, path = line.split(maxsplit=1)
        lines.append(f"{uid} {sf.info(path).frames}")
    out.write_text("\n".join(lines) + "\n")
    return out


def mini_config(src, dst, **override):
    conf = yaml.safe_load(src.read_text(encoding="utf-8"))
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(conf.get(key), dict):
            conf[key] = {**conf[key], **value}
        else:
            conf[key] = value
    dst.write_text(yaml.safe_dump(conf, allow_unicode=True), encoding="utf-8")
    return dst


def gmot_train_args(tmp, max_epoch=2, shapes=True):
    """Data (8 utterances, cached teacher features) and ``asr_train`` arguments for the
    mini recipe's GM-OT config, batch 4: what a recipe's stage 11 passes, minus --ngpu
    (and minus the shape files with ``shapes=False``)."""
    import kaldiio
    from gmot_fixtures import CHARS, TEACHER_DIM, TOKENS, write_data_dir

    utts = {f"utt{i:02d}": "".join(CHARS[(i + k) % len(CHARS)] for k in range(2 + i % 3))
            for i in range(8)}
    data = write_data_dir(tmp / "data", utts)
    (tmp / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    # cached teacher features, as dump_teacher writes them (random: DDP is under test)
    rng = np.random.default_rng(0)
    (tmp / "teacher").mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{tmp}/teacher/feats.ark,{tmp}/teacher/feats.scp") as w:
        for uid, text in sorted(utts.items()):
            w(uid, rng.standard_normal((len(text), TEACHER_DIM)).astype("float32"))
    config = mini_config(
        ROOT / "egs2/aishell_gmot/asr1/conf/mini/train_asr_gmot.yaml", tmp / "train.yaml",
        model_conf=dict(teacher=str(tmp / "bert"), teacher_dim=TEACHER_DIM),
        batch_size=4, max_epoch=max_epoch, keep_nbest_models=1, use_tensorboard=TENSORBOARD,
    )
    args = ["--config", config, "--use_preprocessor", "true", "--token_type", "char",
            "--token_list", tmp / "tokens.txt", "--non_linguistic_symbols", "none",
            "--cleaner", "none", "--g2p", "none"]
    if shapes:
        shape_file = write_shapes(data, tmp / "shapes/speech_shape")
        args += ["--fold_length", 80000, "--train_shape_file", shape_file,
                 "--valid_shape_file", shape_file, "--output_dir", tmp / "exp"]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data}/text,text,text",
                 f"--{split}_data_path_and_name_and_type",
                 f"{tmp}/teacher/feats.scp,teacher_feats,kaldi_ark"]
    return args
