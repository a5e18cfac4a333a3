"""espnet_otreg.data.datadir: read/write/validate/subset/combine/split/merge."""

import pytest

from espnet_otreg.data.datadir import (
    DataDirError,
    combine_data_dirs,
    merge_kv,
    read_kv,
    split_keys,
    split_scp,
    subset_data_dir,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_data_dir,
    write_kv,
)


def _dir(tmp_path, name="d", n=5):
    wav = {f"u{i}": f"/x/u{i}.wav" for i in range(n)}
    text = {f"u{i}": f"文本 {i}" for i in range(n)}
    spk = {f"u{i}": f"s{i % 2}" for i in range(n)}
    write_data_dir(tmp_path / name, wav, text, spk)
    return tmp_path / name


def test_write_read_roundtrip_sorted_and_values_keep_spaces(tmp_path):
    write_kv(tmp_path / "f", {"b": "x y  z", "a": "1", "B": "2"})
    lines = (tmp_path / "f").read_text(encoding="utf-8").splitlines()
    assert [l.split()[0] for l in lines] == ["B", "a", "b"]  # C locale order
    assert read_kv(tmp_path / "f") == {"B": "2", "a": "1", "b": "x y  z"}


def test_read_kv_errors_name_file_line_and_utterance(tmp_path):
    p = tmp_path / "text"
    p.write_bytes("u1 好\nu2 ".encode() + "坏".encode("gbk") + b"\n")
    with pytest.raises(DataDirError, match=r"text:2: utterance 'u2': not UTF-8"):
        read_kv(p)
    p.write_text("u1 a\nu1 b\n")
    with pytest.raises(DataDirError, match=r"text:2: duplicate key 'u1'"):
        read_kv(p)
    p.write_text("u1 a\nu2\n")
    with pytest.raises(DataDirError, match=r"text:2: utterance 'u2' has no value"):
        read_kv(p)
    assert read_kv(p, allow_empty_value=True) == {"u1": "a", "u2": ""}


def test_write_data_dir_validates_and_spk2utt(tmp_path):
    d = _dir(tmp_path)
    assert validate_data_dir(d) == 5
    assert read_kv(d / "spk2utt") == {"s0": "u0 u2 u4", "s1": "u1 u3"}
    assert utt2spk_to_spk2utt({"b": "s", "a": "s"}) == {"s": ["a", "b"]}
    with pytest.raises(DataDirError, match="text does not match wav.scp"):
        write_data_dir(tmp_path / "bad", {"a": "x"}, {"b": "t"})


def test_validate_detects_mismatch_and_unsorted(tmp_path):
    d = _dir(tmp_path)
    (d / "text").write_text("u0 a\nu1 b\n", encoding="utf-8")
    with pytest.raises(DataDirError, match="utterance ids differ"):
        validate_data_dir(d)
    d = _dir(tmp_path, "e")
    (d / "wav.scp").write_text("u1 x\nu0 y\nu2 z\nu3 z\nu4 z\n")
    with pytest.raises(DataDirError, match="not sorted"):
        validate_data_dir(d)


def test_subset_and_combine(tmp_path):
    d = _dir(tmp_path)
    assert subset_data_dir(d, tmp_path / "s", ["u1", "u3"]) == 2
    assert validate_data_dir(tmp_path / "s") == 2
    e = tmp_path / "e"
    write_data_dir(e, {"v0": "p"}, {"v0": "t"}, {"v0": "s9"})
    assert combine_data_dirs(tmp_path / "c", [d, e]) == 6
    assert validate_data_dir(tmp_path / "c") == 6
    with pytest.raises(DataDirError, match="already in another source"):
        combine_data_dirs(tmp_path / "c2", [d, d])


def test_split_and_merge_roundtrip(tmp_path):
    assert [len(c) for c in split_keys(list("abcdefg"), 3)] == [3, 2, 2]
    assert split_keys(["a"], 4) == [["a"]]
    d = _dir(tmp_path, n=7)
    parts = [tmp_path / f"k.{i}" for i in range(1, 4)]
    assert split_scp(d / "wav.scp", parts) == [3, 2, 2]
    merge_kv(tmp_path / "m", parts)
    assert read_kv(tmp_path / "m") == read_kv(d / "wav.scp")
    # More parts than lines: the extra parts are empty files.
    parts = [tmp_path / f"q.{i}" for i in range(1, 10)]
    assert split_scp(d / "wav.scp", parts) == [1] * 7 + [0, 0]
