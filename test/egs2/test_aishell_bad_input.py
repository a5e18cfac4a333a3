"""AISHELL recipe, bad input: each case stops naming the utterance and the problem, or
(where ESPnet/Kaldi skip) skips and reports each one. Runs the recipe's own helpers."""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "aishell_gmot" / "asr1"


def _run(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)


def _wav(path, sec=0.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * sec)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)


def _corpus(root, transcript: bytes, wavs):
    """An extracted AISHELL-1 layout: data_aishell/{wav/<set>/<spk>/<utt>.wav,transcript}."""
    for dset, spk, utt in wavs:
        _wav(root / "data_aishell" / "wav" / dset / spk / f"{utt}.wav")
    t = root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt"
    t.parent.mkdir(parents=True, exist_ok=True)
    t.write_bytes(transcript)
    return root


WAVS = [("train", "S0002", "BAC009S0002W0001"), ("train", "S0002", "BAC009S0002W0002"),
        ("dev", "S0724", "BAC009S0724W0001"), ("test", "S0764", "BAC009S0764W0001")]


def test_stage1_skips_and_reports_unmatched_utterances(tmp_path):
    text = ("BAC009S0002W0001 我 是 学生\n"          # W0002 has audio, no transcript
            "BAC009S0724W0001 你 好\nBAC009S0764W0001 中国 人\n"
            "BAC009S0999W0001 没有 音频\n").encode()  # a transcript with no audio
    root = _corpus(tmp_path / "aishell", text, WAVS)
    r = _run(RECIPE / "local" / "data.py", "--aishell_dir", root, "--out", tmp_path / "data")
    assert r.returncode == 0, r.stderr
    data = tmp_path / "data"
    assert (data / "train" / "text").read_text(encoding="utf-8") == "BAC009S0002W0001 我是学生\n"
    assert (data / "train" / "utt2spk").read_text() == "BAC009S0002W0001 S0002\n"
    skipped = (data / "local" / "skipped.txt").read_text(encoding="utf-8")
    assert "BAC009S0002W0002 train no transcript" in skipped
    assert "BAC009S0999W0001 - transcript with no audio" in skipped
    assert "BAC009S0002W0002" in r.stderr and "no transcript" in r.stderr



PACKED_TEXT = ("BAC009S0002W0001 我 是 学生\nBAC009S0002W0002 你 好\n"
               "BAC009S0724W0001 你 好\nBAC009S0764W0001 中国 人\n").encode()


def _packed_corpus(tmp_path, text=PACKED_TEXT):
    """AISHELL-1 as after ``tar xzf data_aishell.tgz``: wav/<spk>.tar.gz still packed."""
    staged = _corpus(tmp_path / "staged", text, WAVS)
    root = tmp_path / "aishell"
    wav_dir = root / "data_aishell" / "wav"
    wav_dir.mkdir(parents=True)
    (root / "data_aishell" / "transcript").mkdir()
    (root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt").write_bytes(text)
    for spk in ("S0002", "S0724", "S0764"):  # as in the release: <set>/<spk>/<utt>.wav inside
        with tarfile.open(wav_dir / f"{spk}.tar.gz", "w:gz") as tar:
            for dset in ("train", "dev", "test"):
                src = staged / "data_aishell" / "wav" / dset / spk
                if src.is_dir():
                    tar.add(src, arcname=f"{dset}/{spk}")
    return root


def test_stage1_extracts_packed_speaker_archives(tmp_path):
    """--aishell_dir where only data_aishell.tgz was extracted: the release's
    wav/<spk>.tar.gz archives are still packed; stage 1 extracts them (once)."""
    root = _packed_corpus(tmp_path)
    r = _run(RECIPE / "local" / "data.py", "--aishell_dir", root, "--out", tmp_path / "data")
    assert r.returncode == 0, r.stderr
    assert "extracted 3 / 3 speaker archives" in r.stderr
    assert (tmp_path / "data" / "train" / "wav.scp").read_text().count("\n") == 2
    assert (tmp_path / "data" / "test" / "text").read_text(encoding="utf-8") == "BAC009S0764W0001 中国人\n"
    r = _run(RECIPE / "local" / "data.py", "--aishell_dir", root, "--out", tmp_path / "data2")
    assert r.returncode == 0, r.stderr
    assert "already extracted" in r.stderr


def test_stage1_read_only_corpus_extracts_into_the_recipe(tmp_path, monkeypatch):
    """A corpus on a read-only mount: the packed speaker archives are extracted into
    the recipe's download dir (not an error), and the corpus is left as it was."""
    from recipe_helpers import load_local

    data = load_local(RECIPE, "data")
    root = _packed_corpus(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    real_access = os.access
    monkeypatch.setattr(data.os, "access", lambda p, mode: (
        False if mode == os.W_OK and root in Path(p).parents else real_access(p, mode)))
    extract_dir = tmp_path / "downloads" / "data_aishell" / "wav"
    counts = data.prepare(root, tmp_path / "data", extract_dir)
    assert counts == {"train": 2, "dev": 1, "test": 1}
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    for line in (tmp_path / "data" / "train" / "wav.scp").read_text().splitlines():
        assert Path(line.split()[1]).is_relative_to(extract_dir.resolve()), line
    # Again: the extraction is found done, nothing is extracted twice.
    mtime = (extract_dir / "train").stat().st_mtime_ns
    data.prepare(root, tmp_path / "data2", extract_dir)
    assert (extract_dir / "train").stat().st_mtime_ns == mtime


def test_stage1_non_utf8_transcript_stops_naming_the_line(tmp_path):
    text = "BAC009S0002W0001 我 是\n".encode() + "BAC009S0724W0001 你 好\n".encode("gbk")
    root = _corpus(tmp_path / "aishell", text, WAVS)
    r = _run(RECIPE / "local" / "data.py", "--aishell_dir", root, "--out", tmp_path / "data")
    assert r.returncode != 0
    assert "aishell_transcript_v0.8.txt:2: utterance 'BAC009S0724W0001': not UTF-8" in r.stderr


def test_stage1_truncated_download_is_refused(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for i in range(10):
            info = tarfile.TarInfo(f"data_aishell/wav/f{i}")
            info.size = 20000
            tar.addfile(info, io.BytesIO(os.urandom(20000)))
    full = raw.getvalue()
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "data_aishell.tgz").write_bytes(full[: len(full) // 2])  # a cut-off mirror copy
    (srv / "resource_aishell.tgz").write_bytes(full)
    sums = tmp_path / "md5sums"
    sums.write_text(f"{hashlib.md5(full).hexdigest()}  data_aishell.tgz\n"
                    f"{hashlib.md5(full).hexdigest()}  resource_aishell.tgz\n")
    r = _run(RECIPE / "local" / "data.py", "--url_base", srv.as_uri(), "--md5sums", sums,
             "--download_dir", tmp_path / "dl", "--out", tmp_path / "data")
    assert r.returncode != 0
    assert "data_aishell.tgz: downloaded file has MD5" in r.stderr
    assert "truncated or corrupt" in r.stderr
    assert (tmp_path / "dl" / "data_aishell.tgz.bad").is_file()
    assert not (tmp_path / "dl" / "data_aishell.tgz").exists()


def _data_dir(tmp_path, bad):
    d = tmp_path / "data"
    d.mkdir()
    good = tmp_path / "good.wav"
    _wav(good)
    lines = {"u1": str(good), "u2": bad}
    (d / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
    (d / "text").write_text("u1 你好\nu2 好\n", encoding="utf-8")
    (d / "utt2spk").write_text("u1 u1\nu2 u2\n")
    (d / "spk2utt").write_text("u1 u1\nu2 u2\n")
    return d


@pytest.mark.parametrize("case", ["missing", "corrupt"])
def test_stage3_bad_audio_stops_or_is_skipped_and_listed(tmp_path, case):
    if case == "missing":
        bad, why = str(tmp_path / "gone.wav"), "does not exist"
    else:
        bad = tmp_path / "corrupt.wav"
        bad.write_bytes(b"RIFF....WAVEfmt garbage")
        bad, why = str(bad), "cannot read audio"
    d = _data_dir(tmp_path, bad)
    r = _run("-m", "espnet_otreg.data.cli", "format", "--src", d, "--dst", tmp_path / "dump")
    assert r.returncode == 1
    assert "1 of 2 utterances have unusable audio" in r.stderr
    assert "utterance 'u2'" in r.stderr and why in r.stderr
    assert not (tmp_path / "dump" / ".done").exists()
    r = _run("-m", "espnet_otreg.data.cli", "format", "--src", d, "--dst", tmp_path / "dump2",
             "--skip_bad_audio")
    assert r.returncode == 0, r.stderr
    assert "1 written, 1 bad skipped" in r.stdout
    assert (tmp_path / "dump2" / "wav.scp").read_text().split()[0] == "u1"
    assert "u2" in (tmp_path / "dump2" / "bad_audio.txt").read_text()
    assert (tmp_path / "dump2" / "text").read_text(encoding="utf-8") == "u1 你好\n"
