"""espnet_otreg.data.audio: wav.scp reading, speed perturbation, formatting (stage 3)."""

import numpy as np
import pytest
import soundfile as sf

from espnet_otreg.data.audio import (
    AudioError,
    format_data_dir,
    perturb_data_dir_speed,
    read_audio,
    speed_perturb,
    speed_perturb_train_set,
)
from espnet_otreg.data.datadir import read_kv, validate_data_dir, write_data_dir

FS = 16000


def _tone(f=440.0, sec=1.0):
    t = np.arange(int(FS * sec)) / FS
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def _data(tmp_path, n=3):
    wav, text = {}, {}
    for i in range(n):
        p = tmp_path / "wav" / f"u{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, _tone(300 + 100 * i, 0.5 + 0.1 * i), FS)
        wav[f"u{i}"], text[f"u{i}"] = str(p), "你好"[: 1 + i % 2]
    write_data_dir(tmp_path / "data", wav, text, {k: "spk" for k in wav})
    return tmp_path / "data"


def test_speed_perturb_changes_length_and_pitch():
    x = _tone(440.0, 1.0)
    for f in (0.9, 1.1):
        y = speed_perturb(x, f)
        assert abs(len(y) - len(x) / f) <= 1
        spec = np.abs(np.fft.rfft(y))
        peak = np.argmax(spec) * FS / len(y)
        assert peak == pytest.approx(440.0 * f, rel=0.01)  # pitch moves with speed (sox)
    assert speed_perturb(x, 1.0) is x


def test_read_audio_sox_pipe_in_process_and_errors(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, _tone(sec=1.0), FS)
    y, sr = read_audio(f"sox {p} -t wav - speed 0.9 |", "utt1")
    assert sr == FS and abs(len(y) - FS / 0.9) <= 1
    with pytest.raises(AudioError, match=r"utterance 'u9': audio file .*nope.wav does not exist"):
        read_audio(str(tmp_path / "nope.wav"), "u9")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00not a wave file at all")
    with pytest.raises(AudioError, match=r"utterance 'u8': cannot read audio"):
        read_audio(str(bad), "u8")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), FS)
    with pytest.raises(AudioError, match="no samples"):
        read_audio(str(tmp_path / "empty.wav"), "u7")
    with pytest.raises(AudioError, match=r"utterance 'u6': command .* failed"):
        read_audio("exit 3 |", "u6")


def test_perturb_data_dir_names_like_kaldi(tmp_path):
    d = _data(tmp_path)
    perturb_data_dir_speed(d, tmp_path / "sp", 0.9)
    wav = read_kv(tmp_path / "sp" / "wav.scp")
    assert list(wav) == ["sp0.9-u0", "sp0.9-u1", "sp0.9-u2"]
    assert wav["sp0.9-u0"].startswith("sox ") and wav["sp0.9-u0"].endswith("speed 0.9 |")
    assert read_kv(tmp_path / "sp" / "utt2spk")["sp0.9-u0"] == "sp0.9-spk"
    n = speed_perturb_train_set(d, tmp_path / "train_sp", [0.9, 1.0, 1.1])
    assert n == 9 and validate_data_dir(tmp_path / "train_sp") == 9
    assert "u1" in read_kv(tmp_path / "train_sp" / "wav.scp")  # 1.0 keeps the ids


def test_format_data_dir_writes_flac_and_is_idempotent(tmp_path):
    d = _data(tmp_path)
    speed_perturb_train_set(d, tmp_path / "sp", [0.9, 1.0])
    c = format_data_dir(tmp_path / "sp", tmp_path / "dump", "flac", fs=FS, nj=2, progress=False)
    assert c == {"total": 6, "written": 6, "bad": 0}
    dump = tmp_path / "dump"
    assert validate_data_dir(dump) == 6
    n = {k: int(v) for k, v in read_kv(dump / "utt2num_samples").items()}
    assert n["u0"] == FS // 2 and abs(n["sp0.9-u0"] - FS / 2 / 0.9) <= 1
    x, sr = sf.read(read_kv(dump / "wav.scp")["u0"])
    assert sr == FS and len(x) == FS // 2
    assert (dump / "feats_type").read_text().strip() == "raw"
    mtime = (dump / "wav.scp").stat().st_mtime_ns
    assert format_data_dir(tmp_path / "sp", dump, progress=False)["written"] == 0
    assert (dump / "wav.scp").stat().st_mtime_ns == mtime


def test_format_resamples_to_fs(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, _tone(sec=1.0)[::2], 8000)
    write_data_dir(tmp_path / "d", {"a": str(p)}, {"a": "好"})
    format_data_dir(tmp_path / "d", tmp_path / "o", "wav", fs=FS, progress=False)
    assert read_kv(tmp_path / "o" / "utt2num_samples") == {"a": str(FS)}
