"""FLEURS layout -> data dirs, languages, cross-domain sets, bad input
(espnet_otreg.data.fleurs, espnet_otreg.data.common_voice)."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_otreg.data.common_voice import prepare_cross_domain
from espnet_otreg.data.datadir import read_kv, validate_data_dir
from espnet_otreg.data.fleurs import (
    DEFAULT_LANGS, LANGUAGES, FleursDataError, parse_langs, prepare_split, read_tsv,
)


def _wav(path: Path, n=1600):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(n, dtype=np.float32), 16000)


def _fleurs(root: Path, lang="en_us", split="test", rows=None, write_audio=True):
    rows = rows or [("1", "a.wav", "Hello, world.", "hello world"),
                    ("1", "b.wav", "Hello, world!", "hello world"),
                    ("2", "c.wav", "Bye.", "bye")]
    d = root / lang
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{split}.tsv", "w", encoding="utf-8") as f:
        for sid, name, raw, norm in rows:
            f.write("\t".join([sid, name, raw, norm, "x", "1600", "MALE"]) + "\n")
            if write_audio:
                _wav(d / "audio" / split / name)
    return root


def test_languages():
    assert len(LANGUAGES) == 102 and set(DEFAULT_LANGS) <= set(LANGUAGES)
    assert parse_langs("all") == sorted(LANGUAGES)
    assert parse_langs("fr_fr, en_us en_us") == ["en_us", "fr_fr"]
    assert parse_langs("default") == sorted(DEFAULT_LANGS)


def test_unknown_language_is_named_with_hint():
    with pytest.raises(FleursDataError, match=r"unknown FLEURS language code 'en_uk'.*en_us"):
        parse_langs("en_us en_uk")
    with pytest.raises(FleursDataError, match="empty"):
        parse_langs(" ")


def test_prepare_split(tmp_path):
    root = _fleurs(tmp_path / "fleurs")
    _fleurs(root, lang="cmn_hans_cn", rows=[("5", "z.wav", "你好。", "你好")])
    counts = prepare_split(root, ["cmn_hans_cn", "en_us"], "test", tmp_path / "data/test")
    assert counts == {"cmn_hans_cn": 1, "en_us": 3}
    d = tmp_path / "data/test"
    assert validate_data_dir(d) == 4
    text = read_kv(d / "text")
    assert text["en_us-a"] == "Hello, world." and text["cmn_hans_cn-z"] == "你好。"
    assert read_kv(d / "utt2lang")["cmn_hans_cn-z"] == "cmn_hans_cn"
    assert Path(read_kv(d / "wav.scp")["en_us-b"]).is_file()
    prepare_split(root, ["en_us"], "test", tmp_path / "n", transcript="normalized")
    assert read_kv(tmp_path / "n/text")["en_us-a"] == "hello world"


def test_hub_clone_layout_and_tar_audio(tmp_path):
    """<dir>/data/<lang>/ with audio/<split>.tar.gz, extracted on first use."""
    root = tmp_path / "clone"
    _fleurs(root / "data", write_audio=False)
    buf = tmp_path / "test.tar.gz"
    with tarfile.open(buf, "w:gz") as tar:
        for name in ("a.wav", "b.wav", "c.wav"):
            b = io.BytesIO()
            sf.write(b, np.zeros(800, dtype=np.float32), 16000, format="WAV")
            info = tarfile.TarInfo(f"test/{name}")
            info.size = len(b.getvalue())
            tar.addfile(info, io.BytesIO(b.getvalue()))
    (root / "data/en_us/audio").mkdir(parents=True)
    buf.rename(root / "data/en_us/audio/test.tar.gz")
    assert prepare_split(root, ["en_us"], "test", tmp_path / "d") == {"en_us": 3}
    assert (root / "data/en_us/audio/test/c.wav").is_file()


def test_missing_audio_is_named(tmp_path):
    root = _fleurs(tmp_path / "f")
    (root / "en_us/audio/test/b.wav").unlink()
    with pytest.raises(FleursDataError, match=r"test.tsv:2: audio of utterance en_us-b is missing"):
        prepare_split(root, ["en_us"], "test", tmp_path / "d")
    # Opt-in skip: left out *and* listed.
    assert prepare_split(root, ["en_us"], "test", tmp_path / "d", on_error="skip") == {"en_us": 2}
    listed = (tmp_path / "d/skipped_utts.txt").read_text()
    assert listed.startswith("en_us-b\t") and "missing" in listed


@pytest.mark.parametrize("raw", ["", "   ", "\u3000"])
def test_empty_or_whitespace_transcript_is_named(tmp_path, raw):
    root = _fleurs(tmp_path / "f", rows=[("1", "a.wav", "ok", "ok"), ("2", "e.wav", raw, "")])
    with pytest.raises(FleursDataError, match=r"test.tsv:2: utterance en_us-e has an empty transcript"):
        prepare_split(root, ["en_us"], "test", tmp_path / "d")


def test_malformed_tsv_and_missing_language(tmp_path):
    root = _fleurs(tmp_path / "f")
    with open(root / "en_us/test.tsv", "a") as f:
        f.write("3\tbroken.wav\tonly three\n")
    with pytest.raises(FleursDataError, match=r"test.tsv:4: expected 7 tab-separated fields, got 3"):
        read_tsv(root / "en_us/test.tsv")
    with pytest.raises(FleursDataError, match="language 'fr_fr' not found under"):
        prepare_split(root, ["fr_fr"], "test", tmp_path / "d")
    with pytest.raises(FleursDataError, match="missing .*en_us/dev.tsv"):
        prepare_split(root, ["en_us"], "dev", tmp_path / "d")


def test_duplicate_utterance(tmp_path):
    root = _fleurs(tmp_path / "f", rows=[("1", "a.wav", "x", "x"), ("1", "a.wav", "y", "y")])
    with pytest.raises(FleursDataError, match="duplicate utterance en_us-a"):
        prepare_split(root, ["en_us"], "test", tmp_path / "d")


def _cv(root: Path, cv="de", rows=(("a.mp3", "Guten Tag."), ("b.mp3", "Ja."))):
    d = root / cv
    (d / "clips").mkdir(parents=True, exist_ok=True)
    with open(d / "test.tsv", "w") as f:
        f.write("client_id\tpath\tsentence\tup_votes\n")
        for name, s in rows:
            f.write(f"c1\t{name}\t{s}\t2\n")
            _wav(d / "clips" / name)
    return root


def test_cross_domain_common_voice(tmp_path):
    root = _cv(tmp_path / "cv")
    counts = prepare_cross_domain(root, ["de_de", "en_us", "ko_kr"], tmp_path / "x")
    assert counts == {"de_de": 2}
    assert read_kv(tmp_path / "x/utt2lang") == {"de_de-cv-a": "de_de", "de_de-cv-b": "de_de"}
    missing = (tmp_path / "x/missing_langs.txt").read_text()
    assert "en_us" in missing and "ko_kr\tnot a CoVoST-2 language" in missing


def test_cross_domain_covost_test_split(tmp_path):
    root = _cv(tmp_path / "cv", rows=(("a.mp3", "A."), ("b.mp3", "B."), ("c.mp3", "C.")))
    cov = tmp_path / "covost"
    cov.mkdir()
    (cov / "covost_v2.de_en.tsv").write_text(
        "path\tsentence\ttranslation\tclient_id\tsplit\n"
        "a.mp3\tA.\ta\tc\ttrain\nb.mp3\tB.\tb\tc\ttest\nc.mp3\tC.\tc\tc\ttest\n")
    assert prepare_cross_domain(root, ["de_de"], tmp_path / "x", covost_dir=cov) == {"de_de": 2}
    assert sorted(read_kv(tmp_path / "x/text")) == ["de_de-cv-b", "de_de-cv-c"]


def test_cross_domain_bad_input(tmp_path):
    root = _cv(tmp_path / "cv", rows=(("a.mp3", "A."), ("b.mp3", " ")))
    with pytest.raises(FleursDataError, match=r"test.tsv:3: utterance de_de-cv-b has an empty transcript"):
        prepare_cross_domain(root, ["de_de"], tmp_path / "x")
    root = _cv(tmp_path / "cv2")
    (root / "de/clips/b.mp3").unlink()
    with pytest.raises(FleursDataError, match="audio of utterance de_de-cv-b is missing"):
        prepare_cross_domain(root, ["de_de"], tmp_path / "x")
    with pytest.raises(FleursDataError, match="no cross-domain test data"):
        prepare_cross_domain(root, ["ko_kr"], tmp_path / "y")
