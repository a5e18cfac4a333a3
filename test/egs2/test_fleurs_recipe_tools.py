"""egs2/fleurs_otreg/asr1 local tools: scoring, RESULTS.md, configs, run.sh options,
the mini corpus generator and the data stages on bad input (fast; no training)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_helpers import load_local

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "fleurs_otreg" / "asr1"
REPO = RECIPE.parents[2]


def _load(name):
    return load_local(RECIPE, name)


def _data_dir(d: Path, items):
    d.mkdir(parents=True, exist_ok=True)
    (d / "text").write_text("".join(f"{u} {t}\n" for u, (t, _) in sorted(items.items())))
    (d / "utt2lang").write_text("".join(f"{u} {lg}\n" for u, (_, lg) in sorted(items.items())))
    return d


def test_score_per_language(tmp_path):
    score = _load("score")
    d = _data_dir(tmp_path / "data", {"a": ("Hello, world.", "en_us"), "b": ("The cat sat.", "en_us"),
                                      "c": ("我爱北京", "cmn_hans_cn")})
    hyp = tmp_path / "hyp"
    hyp.write_text("a hello world\nb the hat\nc 我爱背景\n")
    out = score.score(d, hyp, tmp_path / "out")
    assert out["langs"]["en_us"] == dict(metric="wer", rate=40.0, S=1, D=1, I=0, n_ref=5, n_utt=2,
                                         n_empty_hyp=0)
    assert out["langs"]["cmn_hans_cn"]["metric"] == "cer" and out["langs"]["cmn_hans_cn"]["rate"] == 50.0
    assert out["avg"] == 45.0 and out["all"]["rate"] == pytest.approx(100 * 4 / 9, abs=0.01)
    assert json.loads((tmp_path / "out/scores.json").read_text())["avg"] == 45.0
    assert "| cmn_hans_cn | CER | 50.00 |" in (tmp_path / "out/result.md").read_text()


def test_score_missing_hypothesis_is_an_error(tmp_path):
    score = _load("score")
    d = _data_dir(tmp_path / "data", {"a": ("x", "en_us"), "b": ("y", "en_us")})
    hyp = tmp_path / "hyp"
    hyp.write_text("a x\nb\n")  # an empty hypothesis is fine
    assert score.score(d, hyp, tmp_path / "o")["langs"]["en_us"]["n_empty_hyp"] == 1
    hyp.write_text("a x\n")
    with pytest.raises(SystemExit, match=r"no hypothesis for 1 of 2 .*\['b'\]"):
        score.score(d, hyp, tmp_path / "o")


def test_make_results(tmp_path):
    mr = _load("make_results")
    exp = tmp_path / "exp"
    sc = {"langs": {"en_us": {"metric": "wer", "rate": 12.5}, "de_de": {"metric": "wer", "rate": 20.0}},
          "avg": 16.25, "all": {"rate": 15.0}}
    f = exp / "slm_train_slm_otreg/decode_x/test/score/scores.json"
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps(sc))
    g = exp / "slm_train_slm_otreg/modality_gap/test/modality_gap.json"
    g.parent.mkdir(parents=True)
    g.write_text(json.dumps({"summary": {"mean_cos": 0.25, "w2": 1.5}, "per_lang": {}}))
    out = tmp_path / "RESULTS.md"
    mr.main(["--exp_dir", str(exp), "--out", str(out)])
    md = out.read_text()
    assert "| OTReg (`slm_train_slm_otreg`) | 20.00 | 12.50 | 16.25 | 15.00 | 6.90 (published) |" in md
    assert "| base SLM | - | - | - | - | - |" in md and "| base + CTC | - | - | - | - | - |" in md
    assert "13.12 (published)" in md  # cross-domain: our cells "-", the paper's marked
    assert "| `slm_train_slm_otreg` | test | 0.25 | 1.5 |" in md
    assert str(f) in md  # every number names its source


def test_configs_parse_with_the_slm_task(tmp_path):
    """Every shipped config is accepted by the SLM task's parser (unknown keys fail)."""
    code = (
        "import sys, glob\n"
        "from espnet_otreg.tasks.slm import SLMTask\n"
        "p = SLMTask.get_parser()\n"
        "for c in sorted(glob.glob(sys.argv[1] + '/conf/**/train_slm_*.yaml', recursive=True)):\n"
        "    a = p.parse_args(['--config', c, '--output_dir', 'x'])\n"
        "    assert a.llm_conf['model_name_or_path'], c\n"
        "    print(c, a.model_conf)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(RECIPE)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("train_slm_") == 10  # 8 recipe + mini configs, 2 of the OTReg experiment
    assert "'lambda_ot': 0.3" in r.stdout and "'ctc_weight': 0.3" in r.stdout


def _run(args, cwd=RECIPE, timeout=120):
    return subprocess.run(["bash", "run.sh", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_run_sh_rejects_unknown_option():
    r = _run(["--no_such_option", "1"])
    assert r.returncode != 0 and "unknown option --no_such_option" in r.stderr


def test_mini_corpus_is_deterministic(tmp_path):
    gen = _load("make_mini_corpus")
    gen.main([str(tmp_path / "a"), "--n_train", "3", "--n_dev", "1", "--n_test", "1", "--n_cross", "1"])
    gen.main([str(tmp_path / "b"), "--n_train", "3", "--n_dev", "1", "--n_test", "1", "--n_cross", "1"])
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 * (3 + 3 + 1 + 1 + 2)  # 2 langs x (tsvs + wavs + cv tsv + cv clip)
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_data_stage_errors_name_the_item(tmp_path):
    """Stage 1 through run.sh's helper: unknown language, missing audio, empty transcript."""
    gen = _load("make_mini_corpus")
    src = tmp_path / "fleurs"
    gen.main([str(src), "--n_train", "2", "--n_dev", "1", "--n_test", "2", "--n_cross", "0"])
    prep = [sys.executable, str(RECIPE / "local/data_prep.py"), "--fleurs_dir", str(src),
            "--data_dir", str(tmp_path / "data")]
    env = dict(os.environ, PYTHONPATH=str(REPO))

    r = subprocess.run(prep + ["--langs", "en_us xx_yy"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "unknown FLEURS language code 'xx_yy'" in r.stderr

    wav = next((src / "de_de/audio/test").glob("*.wav"))
    wav.rename(wav.with_suffix(".bak"))
    r = subprocess.run(prep + ["--langs", "en_us de_de"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and f"audio of utterance de_de-{wav.stem} is missing" in r.stderr
    r = subprocess.run(prep + ["--langs", "en_us de_de", "--on_error", "skip"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0
    assert (tmp_path / "data/test/skipped_utts.txt").read_text().startswith(f"de_de-{wav.stem}\t")
    wav.with_suffix(".bak").rename(wav)

    tsv = src / "en_us/train.tsv"
    rows = tsv.read_text().splitlines()
    f = rows[1].split("\t")
    f[2] = "   "
    rows[1] = "\t".join(f)
    tsv.write_text("\n".join(rows) + "\n")
    r = subprocess.run(prep + ["--langs", "en_us"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "train.tsv:2: utterance en_us-" in r.stderr and "empty transcript" in r.stderr


def test_upload_needs_token_from_env_only(tmp_path):
    """Stage 16's upload (python -m espnet_otreg.recipe.zoo upload) of an SLM folder."""
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "meta.yaml").write_text("espnet: x\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-m", "espnet_otreg.recipe.zoo", "upload", "--dir",
                        str(folder), "--repo", "someone/x"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "set HF_TOKEN" in r.stderr


def test_format_stage_names_unreadable_audio(tmp_path):
    """Stage 3: a corrupt wav stops the stage naming the utterance; utt2lang follows."""
    gen = _load("make_mini_corpus")
    src = tmp_path / "fleurs"
    gen.main([str(src), "--langs", "en_us", "--n_train", "2", "--n_dev", "1", "--n_test", "3",
              "--n_cross", "0"])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, str(RECIPE / "local/data_prep.py"), "--langs", "en_us",
                    "--fleurs_dir", str(src), "--data_dir", str(tmp_path / "data")], check=True,
                   capture_output=True, env=env)
    fmt = [sys.executable, "-m", "espnet_otreg.data.cli", "format", "--nj", "1",
           "--src", str(tmp_path / "data/test")]  # stage 3 (lib.sh format_sets)
    r = subprocess.run(fmt + ["--dst", str(tmp_path / "ok")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "ok/utt2lang").read_text().splitlines()) == 3
    wav = sorted((src / "en_us/audio/test").glob("*.wav"))[1]
    wav.write_bytes(b"RIFF0000WAVEjunk")
    r = subprocess.run(fmt + ["--dst", str(tmp_path / "bad")], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and f"en_us-{wav.stem}" in r.stderr and "cannot read audio" in r.stderr


def test_score_english_with_whisper_normalizer(tmp_path):
    """--english_normalizer whisper: contractions and numbers as Whisper scores English."""
    score = _load("score")
    d = _data_dir(tmp_path / "data", {"a": ("We won't pay ten dollars.", "en_us"),
                                      "b": ("Wir zahlen zehn.", "de_de")})
    hyp = tmp_path / "hyp"
    hyp.write_text("a we will not pay $10\nb wir zahlen zehn\n")
    basic = score.score(d, hyp, tmp_path / "o1")
    assert basic["langs"]["en_us"]["rate"] > 0
    whisper = score.score(d, hyp, tmp_path / "o2", english=score.english_normalizer())
    assert whisper["langs"]["en_us"]["rate"] == 0.0
    assert whisper["langs"]["de_de"] == basic["langs"]["de_de"]


def test_full_configs_pin_the_base_models_by_revision():
    import re

    import yaml

    for c in sorted((RECIPE / "conf").glob("train_slm_*.yaml")):
        conf = yaml.safe_load(c.read_text())
        for key in ("encoder_conf", "llm_conf"):
            assert re.fullmatch(r"[0-9a-f]{40}", conf[key]["revision"]), (c, key)


def test_revision_reaches_from_pretrained(monkeypatch):
    import transformers

    from espnet_otreg.slm.llm import load_llm

    seen = {}

    def fake(name, **kw):
        seen.update(kw, name=name)
        raise RuntimeError("stop")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    with pytest.raises(RuntimeError, match="stop"):
        load_llm("some/llm", dtype="float32", revision="abc123")
    assert seen["name"] == "some/llm" and seen["revision"] == "abc123"
