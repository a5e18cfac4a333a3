"""espnet_otreg.data.filtering: duration/text/CTC-length filter with reasons (stage 4)."""

from espnet_otreg.data.datadir import read_kv, validate_data_dir, write_data_dir, write_kv
from espnet_otreg.data.filtering import ctc_min_frames, filter_data_dir


def test_ctc_min_frames_counts_repeats():
    assert ctc_min_frames("abc") == 3
    assert ctc_min_frames("aab") == 4  # a blank between the two a's
    assert ctc_min_frames("好 好") == 3


def test_filter_reports_every_reason(tmp_path):
    fs = 16000
    utts = {  # utt: (seconds, text)
        "ok": (2.0, "你好"),
        "short": (0.05, "好"),
        "long": (30.0, "好"),
        "empty": (2.0, ""),
        "toolong_text": (2.0, "好" * 15),
        "ctc": (0.5, "你好" * 6 + "你"),  # 13 chars, 12 frames
    }
    src = tmp_path / "src"
    write_data_dir(src, {u: f"/a/{u}.flac" for u in utts}, {u: t for u, (_, t) in utts.items()})
    write_kv(src / "utt2num_samples", {u: str(int(s * fs)) for u, (s, _) in utts.items()})
    c = filter_data_dir(src, tmp_path / "dst", 0.1, 20.0, max_text_len=14, fs=fs)
    assert c == dict(kept=1, too_short=1, too_long=1, empty_text=1, text_too_long=1,
                     ctc_infeasible=1)
    assert validate_data_dir(tmp_path / "dst") == 1
    removed = read_kv(tmp_path / "dst" / "removed")
    assert set(removed) == set(utts) - {"ok"}
    assert removed["ctc"].startswith("ctc_infeasible")
