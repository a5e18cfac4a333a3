"""egs2/fleurs_otreg/asr1/local/make_otreg_corpus.py at toy size: Kaldi data dirs per
set, each test set and its acoustic shift paired by sentence and voice, resumable.
Skipped where espeak-ng is not installed (.ci/run installs it with apt-get)."""

import shutil
from pathlib import Path

import pytest
import soundfile as sf
from recipe_helpers import load_local

from espnet_otreg.data.datadir import read_kv

RECIPE = Path(__file__).resolve().parents[2] / "egs2/fleurs_otreg/asr1"
SETS = {"train": ["今天天气很好", "我们去公园", "服务很好"], "dev": ["价格有点贵"],
        "test": ["这家店的菜好吃", "房间很干净"], "test_everyday": ["你叫什么名字"]}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_sets_pairs_and_resume(tmp_path):
    mod = load_local(RECIPE, "make_otreg_corpus")
    (tmp_path / "text/speech").mkdir(parents=True)
    for name, lines in SETS.items():
        (tmp_path / f"text/speech/{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "corpus"
    args = ["--text", str(tmp_path / "text"), "--out", str(out), "--nj", "1"]
    mod.main(args)
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == ["dev", "test", "test_acoustic", "test_everyday", "test_everyday_acoustic", "train"]
    text = {n: read_kv(out / "data" / n / "text") for n in names}
    assert sorted(text["train"].values()) == sorted(SETS["train"])
    # the acoustic shift: same sentences, same voices, faster
    assert [t for _, t in sorted(text["test"].items())] == \
        [t for _, t in sorted(text["test_acoustic"].items())]
    wavs = {n: read_kv(out / "data" / n / "wav.scp") for n in ("test", "test_acoustic")}
    dur = {n: sum(sf.info(p).duration for p in w.values()) for n, w in wavs.items()}
    assert dur["test_acoustic"] < 0.95 * dur["test"]
    spk = read_kv(out / "data/test/utt2spk")
    assert set(spk.values()) == {"test0", "test1"} and all(u.startswith(s) for u, s in spk.items())
    assert set(read_kv(out / "data/train/utt2lang").values()) == {"cmn_hans_cn"}
    # a rerun keeps the audio it finds, and writes the same data dirs
    stamp = {p: p.stat().st_mtime_ns for p in (out / "wav").rglob("*.wav")}
    before = (out / "data/test_acoustic/wav.scp").read_text()
    mod.main(args)
    assert {p: p.stat().st_mtime_ns for p in (out / "wav").rglob("*.wav")} == stamp
    assert (out / "data/test_acoustic/wav.scp").read_text() == before


def test_missing_sets_stop_it(tmp_path):
    mod = load_local(RECIPE, "make_otreg_corpus")
    (tmp_path / "speech").mkdir()
    (tmp_path / "speech/train.txt").write_text("今天\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="has no dev, test.txt"):
        mod.main(["--text", str(tmp_path), "--out", str(tmp_path / "o")])
