"""Audio for data directories: read ``wav.scp`` entries, speed-perturb, format a dump dir.

``wav.scp`` values are what Kaldi and ESPnet accept:

- a file path (any format ``soundfile`` reads: wav, flac, ...),
- ``<ark path>:<offset>`` (a Kaldi ark, read with ``kaldiio``),
- a Kaldi pipe ``<command> |`` whose stdout is a wav file.

Speed perturbation (ESPnet stage 2) writes the Kaldi form
``sox <path> -t wav - speed <factor> |``, so a data dir stays usable by Kaldi and
ESPnet tools when ``sox`` is installed. :func:`read_audio` recognises exactly this form
and applies the same effect in-process (:func:`speed_perturb`), so no ``sox`` is needed
and no process is started per utterance. Any other pipe is run through the shell.

:func:`format_data_dir` is ESPnet's ``format_wav_scp.sh`` (stage 3): it reads every
utterance, checks it, writes ``<dump>/data/format.<k>/<utt>.<flac|wav>`` and a new
``wav.scp`` plus ``utt2num_samples``, and copies ``text``/``utt2spk``/``utt2lang``/``spk2utt``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from espnet_otreg.data.datadir import (
    DataDirError,
    read_kv,
    utt2spk_to_spk2utt,
    write_kv,
)

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)

_SOX_SPEED = re.compile(
    r"^sox\s+(?:-t\s+wav\s+)?(?P<path>\S+)\s+-t\s+wav\s+-\s+speed\s+(?P<f>[0-9.]+)\s*\|$"
)


class AudioError(ValueError):
    """An utterance's audio is missing, unreadable or unusable (message names it)."""


def sox_speed_command(path: str, factor: float) -> str:
    """The Kaldi/ESPnet ``wav.scp`` value for ``path`` speed-perturbed by ``factor``."""
    return f"sox {path} -t wav - speed {factor:g} |"


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Change speed and pitch together by ``factor``, like ``sox ... speed factor``.

    Playing ``x`` ``factor`` times faster at the same sample rate is resampling by
    ``1/factor``: the output has ``round(len(x) / factor)`` samples. We use a polyphase
    filter (``scipy.signal.resample_poly``, Kaiser window) with the rational
    ``up/down = 1/factor``; sox uses its own band-limited resampler, so samples differ
    slightly from sox's, the effect is the same.
    """
    if factor == 1.0:
        return x
    from scipy.signal import resample_poly

    ratio = Fraction(1.0 / factor).limit_denominator(1000)
    y = resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator, axis=0)
    return y.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)


def read_audio(value: str, key: str = "?") -> Tuple[np.ndarray, int]:
    """Read one ``wav.scp`` value. Returns (samples as float32 in [-1, 1], rate).

    Raises :class:`AudioError` naming ``key`` (the utterance id) and the problem: file
    missing, unreadable or corrupt, failing command, no samples, non-finite samples.
    """
    import soundfile as sf

    value = value.strip()
    m = _SOX_SPEED.match(value)
    try:
        if m:
            x, sr = read_audio(m.group("path"), key)
            return speed_perturb(x, float(m.group("f"))), sr
        if value.endswith("|"):
            cmd = value[:-1].strip()
            p = subprocess.run(cmd, shell=True, capture_output=True)
            if p.returncode != 0:
                raise AudioError(f"utterance {key!r}: command {cmd!r} failed "
                                 f"({p.returncode}): {p.stderr.decode(errors='replace')[-300:]}")
            x, sr = sf.read(io.BytesIO(p.stdout), dtype="float32", always_2d=False)
        elif re.search(r"\.ark:\d+$", value):
            import kaldiio

            sr, x = kaldiio.load_mat(value)
            x = np.asarray(x, dtype=np.float32)
            if np.issubdtype(x.dtype, np.integer) or np.abs(x).max(initial=0) > 1.0:
                x = x / 32768.0
        else:
            if not os.path.isfile(value):
                raise AudioError(f"utterance {key!r}: audio file {value} does not exist")
            x, sr = sf.read(value, dtype="float32", always_2d=False)
    except AudioError:
        raise
    except Exception as e:  # soundfile/libsndfile, kaldiio: corrupt or unknown format
        raise AudioError(f"utterance {key!r}: cannot read audio {value!r} "
                         f"({type(e).__name__}: {e})") from None
    if x.shape[0] == 0:
        raise AudioError(f"utterance {key!r}: audio {value!r} has no samples")
    if not np.isfinite(x).all():
        raise AudioError(f"utterance {key!r}: audio {value!r} has NaN/inf samples")
    return x, int(sr)


def resample(x: np.ndarray, sr: int, fs: int) -> np.ndarray:
    """Resample ``x`` from ``sr`` to ``fs`` Hz (polyphase, exact rational ratio)."""
    if sr == fs:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr, fs)
    return resample_poly(x, fs // g, sr // g, axis=0).astype(np.float32)


def _format_one(job: Tuple[str, str, str, Optional[int], str]):
    key, value, out_path, fs, audio_format = job
    import soundfile as sf

    try:
        if os.path.isfile(out_path):  # resume: written atomically by an earlier run
            return key, out_path, sf.info(out_path).frames, None
        x, sr = read_audio(value, key)
        if fs is not None and sr != fs:
            x, sr = resample(x, sr, fs), fs
        x = np.clip(x, -1.0, 1.0)
        tmp = out_path + ".tmp"
        sf.write(tmp, x, sr, format=audio_format.upper(), subtype="PCM_16")
        os.replace(tmp, out_path)
        return key, out_path, int(x.shape[0]), None
    except AudioError as e:
        return key, None, 0, str(e)


def format_data_dir(
    src: PathLike,
    dst: PathLike,
    audio_format: str = "flac",
    fs: Optional[int] = None,
    nj: int = 1,
    skip_bad: bool = False,
    shard_size: int = 5000,
    progress: bool = True,
) -> Dict[str, int]:
    """Write the audio of data dir ``src`` as files under ``dst`` (ESPnet stage 3).

    Args:
        src: data dir with ``wav.scp`` (and ``text``, ``utt2spk``, ``spk2utt``).
        dst: dump dir; gets ``data/format.<k>/<utt>.<audio_format>``, ``wav.scp``,
            ``utt2num_samples``, the other files copied, ``feats_type`` (``raw``) and
            ``audio_format``.
        audio_format: ``flac`` (lossless, half the size) or ``wav``; 16-bit PCM.
        fs: resample to this rate (None: keep each file's rate).
        nj: parallel worker processes.
        skip_bad: False (default): any unreadable utterance stops the stage with a
            :class:`AudioError` listing every bad one (all are checked first). True: bad
            utterances are left out of every file of ``dst`` and listed, one per line,
            in ``dst/bad_audio.txt`` and the log.

    Idempotent: a finished ``dst`` (stamp ``dst/.done``) is not touched; an interrupted
    one resumes, reusing the files already written. Returns counts
    ``{"total", "written", "bad"}``.
    """
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    stamp = dst / ".done"
    if stamp.is_file():
        n = len(read_kv(dst / "wav.scp"))
        log.info("%s: already formatted (%d utterances); delete it to redo", dst, n)
        return {"total": n, "written": 0, "bad": 0}
    wav_scp = read_kv(src / "wav.scp")
    keys = list(wav_scp)
    jobs = []
    for i, key in enumerate(keys):
        sub = dst / "data" / f"format.{i // shard_size + 1}"
        jobs.append((key, wav_scp[key], str(sub / f"{key}.{audio_format}"), fs, audio_format))
    for d in {Path(j[2]).parent for j in jobs}:
        d.mkdir(parents=True, exist_ok=True)

    results = {}
    errors: List[Tuple[str, str]] = []
    bar = tqdm(total=len(jobs), desc=f"format {src.name}", unit="utt",
               disable=not progress, mininterval=5)
    if nj > 1 and len(jobs) > 1:
        with get_context("fork").Pool(nj) as pool:
            it = pool.imap_unordered(_format_one, jobs, chunksize=16)
            for key, path, n, err in it:
                bar.update()
                (errors.append((key, err)) if err else results.__setitem__(key, (path, n)))
    else:
        for job in jobs:
            key, path, n, err = _format_one(job)
            bar.update()
            (errors.append((key, err)) if err else results.__setitem__(key, (path, n)))
    bar.close()

    errors.sort()
    if errors:
        (dst / "bad_audio.txt").write_text(
            "".join(f"{k}\t{e}\n" for k, e in errors), encoding="utf-8")
        for k, e in errors:
            log.warning("bad audio: %s", e)
        if not skip_bad:
            shown = "\n  ".join(e for _, e in errors[:20])
            raise AudioError(
                f"{src}: {len(errors)} of {len(keys)} utterances have unusable audio "
                f"(all listed in {dst / 'bad_audio.txt'}):\n  {shown}\n"
                "Fix or remove them, or skip them with --skip_bad_audio true."
            )
    write_kv(dst / "wav.scp", {k: p for k, (p, _) in results.items()})
    write_kv(dst / "utt2num_samples", {k: str(n) for k, (_, n) in results.items()})
    for name in ("text", "utt2spk", "utt2lang"):  # utt2lang: FLEURS's language per utterance
        if (src / name).is_file():
            m = read_kv(src / name, allow_empty_value=(name == "text"))
            missing = [k for k in results if k not in m]
            if missing:
                raise DataDirError(f"{src / name}: no entry for {len(missing)} utterances "
                                   f"of wav.scp, e.g. {missing[:5]}")
            write_kv(dst / name, {k: m[k] for k in results})
    if (dst / "utt2spk").is_file():
        write_kv(dst / "spk2utt", {s: " ".join(u) for s, u in
                                   utt2spk_to_spk2utt(read_kv(dst / "utt2spk")).items()})
    (dst / "feats_type").write_text("raw\n")
    (dst / "audio_format").write_text(f"{audio_format}\n")
    stamp.touch()
    return {"total": len(keys), "written": len(results), "bad": len(errors)}


def perturb_data_dir_speed(src: PathLike, dst: PathLike, factor: float) -> int:
    """Kaldi's ``perturb_data_dir_speed.sh``: a copy of data dir ``src`` whose audio
    plays ``factor`` times faster (ESPnet stage 2, training data only).

    Utterance and speaker ids get the prefix ``sp<factor>-`` (``sp0.9-BAC009S0002W0122``),
    ``wav.scp`` values become ``sox <path> -t wav - speed <factor> |`` (pipes:
    ``<cmd> | sox -t wav - -t wav - speed <factor> |``), ``utt2num_samples`` and
    ``utt2dur`` are rescaled. ``factor == 1.0`` is a plain copy with unchanged ids, as
    in ESPnet. Returns the number of utterances.
    """
    src, dst = Path(src), Path(dst)
    prefix = "" if factor == 1.0 else f"sp{factor:g}-"
    wav = read_kv(src / "wav.scp")
    text = read_kv(src / "text", allow_empty_value=True)
    utt2spk = read_kv(src / "utt2spk")

    def perturbed(v: str) -> str:
        if factor == 1.0:
            return v
        if v.endswith("|"):
            return f"{v} sox -t wav - -t wav - speed {factor:g} |"
        return sox_speed_command(v, factor)

    dst.mkdir(parents=True, exist_ok=True)
    n = write_kv(dst / "wav.scp", {prefix + k: perturbed(v) for k, v in wav.items()})
    write_kv(dst / "text", {prefix + k: v for k, v in text.items()})
    u2s = {prefix + k: prefix + v for k, v in utt2spk.items()}
    write_kv(dst / "utt2spk", u2s)
    write_kv(dst / "spk2utt", {s: " ".join(u) for s, u in utt2spk_to_spk2utt(u2s).items()})
    if (src / "utt2num_samples").is_file():
        write_kv(dst / "utt2num_samples", {
            prefix + k: str(int(round(int(v) / factor)))
            for k, v in read_kv(src / "utt2num_samples").items()})
    if (src / "utt2dur").is_file():
        write_kv(dst / "utt2dur", {
            prefix + k: f"{float(v) / factor:.3f}" for k, v in read_kv(src / "utt2dur").items()})
    return n


def speed_perturb_train_set(src: PathLike, dst: PathLike, factors: Sequence[float]) -> int:
    """``src`` perturbed by each factor, combined into ``dst`` (ESPnet's ``<train>_sp``).

    Writes ``dst`` only; the per-factor dirs are built in ``dst/.sp<factor>`` and
    combined. Returns the number of utterances.
    """
    from espnet_otreg.data.datadir import combine_data_dirs

    dst = Path(dst)
    parts = []
    for f in factors:
        part = dst / f".sp{float(f):g}"
        perturb_data_dir_speed(src, part, float(f))
        parts.append(part)
    n = combine_data_dirs(dst, parts)
    return n
