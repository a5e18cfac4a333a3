"""espnet_otreg.data.cli: the recipe commands, their messages and exit codes."""

from espnet_otreg.data.cli import main
from espnet_otreg.data.datadir import read_kv, write_data_dir, write_kv


def test_split_merge_validate_score(tmp_path, capsys):
    wav = {f"u{i}": f"/a/u{i}.wav" for i in range(5)}
    write_data_dir(tmp_path / "d", wav, {k: "你好" for k in wav})
    assert main(["validate", "--dir", str(tmp_path / "d")]) == 0
    assert "ok (5 utterances)" in capsys.readouterr().out
    assert main(["split", "--scp", str(tmp_path / "d" / "wav.scp"),
                 "--out", str(tmp_path / "k.{}.scp"), "--nj", "2"]) == 0
    assert main(["merge", "--out", str(tmp_path / "m"),
                 "--parts", str(tmp_path / "k.1.scp"), str(tmp_path / "k.2.scp")]) == 0
    assert read_kv(tmp_path / "m") == wav
    write_kv(tmp_path / "hyp", {k: "你" for k in wav})
    assert main(["score", "--ref", str(tmp_path / "d" / "text"), "--hyp", str(tmp_path / "hyp"),
                 "--out", str(tmp_path / "s"), "--backend", "python"]) == 0
    assert "error rate 50.00%" in capsys.readouterr().out


def test_errors_exit_1_with_message(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    assert main(["validate", "--dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "ERROR:" in err and "missing wav.scp" in err


def test_check_keys_names_the_missing_utterances_and_the_fix(tmp_path, capsys):
    """A teacher cache that lacks utterances of the training list: stage 11 stops before
    training, naming them and the stage that rebuilds the cache (ESPnet's loader would
    die mid-epoch on a bare KeyError)."""
    write_kv(tmp_path / "text", {f"u{i}": "你好" for i in range(6)})
    write_kv(tmp_path / "feats.scp", {f"u{i}": f"feats.ark:{i}" for i in range(4)})
    args = ["check_keys", "--scp", str(tmp_path / "feats.scp"), "--reference",
            str(tmp_path / "text"), "--what", "teacher features", "--rebuild", "run stage 6"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "lacks 2 of the 6 utterances" in err and "u4, u5" in err and "run stage 6" in err
    write_kv(tmp_path / "feats.scp", {f"u{i}": f"feats.ark:{i}" for i in range(7)})
    assert main(args) == 0
    assert "has all 6 utterances" in capsys.readouterr().out
    assert main(["check_keys", "--scp", str(tmp_path / "none.scp"), "--reference",
                 str(tmp_path / "text"), "--rebuild", "run stage 6"]) == 1
    assert "missing" in capsys.readouterr().err
