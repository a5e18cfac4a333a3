"""egs2/fleurs_otreg/asr1/local/make_encoder_data.py: the speech encoder's CTC targets
(toneless syllables, one symbol each, or the characters), other files copied."""

from pathlib import Path

import pytest
from recipe_helpers import load_local

from espnet_otreg.data.datadir import read_kv

RECIPE = Path(__file__).resolve().parents[2] / "egs2/fleurs_otreg/asr1"
SETS = {"train": {"a1": "他是妈妈", "a2": "它在马上", "a3": "银行行长"},
        "test_everyday": {"b1": "塔骂他"}}


def _data(root: Path, sets=SETS) -> Path:
    for name, rows in sets.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "text").write_text("".join(f"{u} {t}\n" for u, t in rows.items()), encoding="utf-8")
        (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in rows))
        (d / "utt2spk").write_text("".join(f"{u} s\n" for u in rows))
        (d / "spk2utt").write_text("s " + " ".join(rows) + "\n")
    return root


def test_syllable_targets(tmp_path):
    mod = load_local(RECIPE, "make_encoder_data")
    data = _data(tmp_path / "data")
    mod.main(["--data", str(data), "--out", str(tmp_path / "enc"), "--target", "syllable"])
    text = {n: read_kv(tmp_path / f"enc/data/{n}/text") for n in SETS}
    # homophones share one symbol: the character training reads most often so
    # (ta: 他 twice, 它 once, 塔 never), one symbol per character
    assert text["train"]["a1"][0] == text["train"]["a2"][0] == "他"
    assert text["test_everyday"]["b1"] == "他" + text["train"]["a2"][2] + "他"
    assert all(len(text[n][u]) == len(SETS[n][u]) for n in SETS for u in SETS[n])
    # polyphones read in context: 银行 yin hang, 行长 hang zhang: one symbol for "hang"
    assert text["train"]["a3"][1] == text["train"]["a3"][2]
    # every syllable has its own symbol
    info = __import__("json").loads((tmp_path / "enc/syllables.json").read_text(encoding="utf-8"))
    assert len(set(info["symbol"].values())) == len(info["symbol"]) == info["syllables"]
    assert (tmp_path / "enc/data/train/wav.scp").read_text() == (data / "train/wav.scp").read_text()


def test_char_targets_copy_the_transcripts(tmp_path):
    mod = load_local(RECIPE, "make_encoder_data")
    data = _data(tmp_path / "data")
    mod.main(["--data", str(data), "--out", str(tmp_path / "enc"), "--target", "char"])
    assert read_kv(tmp_path / "enc/data/train/text") == SETS["train"]


def test_a_character_without_reading_names_the_utterance(tmp_path):
    mod = load_local(RECIPE, "make_encoder_data")
    data = _data(tmp_path / "data", {"train": {"a1": "他是X"}})
    with pytest.raises(ValueError, match=r"a1: no pinyin for 'X'"):
        mod.main(["--data", str(data), "--out", str(tmp_path / "enc"), "--target", "syllable"])


def test_one_symbol_per_syllable_when_two_readings_share_a_character():
    mod = load_local(RECIPE, "make_encoder_data")
    sets = {"train": [("u1", "银行"), ("u2", "行走"), ("u3", "行人")]}  # 行: hang once, xing twice
    symbol, heard = mod.syllable_symbols(sets)
    assert symbol["xing"] == "行" and symbol["hang"] != "行"
    assert len(set(symbol.values())) == len(symbol)
