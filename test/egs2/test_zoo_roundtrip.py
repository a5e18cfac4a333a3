"""The model-zoo round trip of the AISHELL recipe's stages 14-16, offline.

A tiny GM-OT model (as ``asr_train`` writes it: config.yaml with every argument,
weights, global-MVN stats) is packed as stage 14 packs it (``espnet2.bin.pack asr``
for the GM-OT model and for its ``export_ctc`` export), stage 16's folder is made
(``espnet_otreg.recipe.zoo prepare``), and then, as users load models:

- ``Speech2Text.from_pretrained(<export zip>)`` decodes in a process where
  espnet_otreg cannot be imported;
- ``Speech2Text.from_pretrained(<GM-OT zip>)`` decodes after ``import espnet_otreg``,
  with the same hypotheses;
- the stage-16 folder loads through ``from_pretrained("<user>/<repo>")`` with the Hub
  download replaced by that local folder (the zoo's own snapshot code does the rest),
  again without espnet_otreg, with the same hypotheses; its model card parses with
  huggingface_hub and carries the RESULTS.md metrics as model-index.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "test" / "asr"))
from gmot_fixtures import CHARS, tiny_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DECODE = r"""
import json, sys
if sys.argv[1] == "block":
    sys.modules["espnet_otreg"] = None
else:
    import espnet_otreg  # registers model: gmot with stock ESPnet
mode, tag, wavs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if mode == "block" and len(sys.argv) > 4:  # a Hub name served from a local folder
    import shutil, tempfile
    import espnet_model_zoo.downloader as d
    folder = sys.argv[4]
    def snapshot_download(repo_id, revision=None, library_name=None, cache_dir=None, **kw):
        assert repo_id == tag and library_name == "espnet", (repo_id, library_name)
        dst = tempfile.mkdtemp() + "/snapshot"
        shutil.copytree(folder, dst)
        return dst
    d.snapshot_download = snapshot_download
import soundfile
from espnet2.bin.asr_inference import Speech2Text
s2t = Speech2Text.from_pretrained(tag, ctc_weight=1.0, beam_size=1, lm_weight=0.0)
out = {}
for utt, path in wavs.items():
    speech, _ = soundfile.read(path)
    out[utt] = s2t(speech)[0][0]
print("HYPS " + json.dumps(out, ensure_ascii=False))
print("MODEL " + type(s2t.asr_model).__name__)
"""


def _py(*args, cwd, check=True, block=False):
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    if block:  # a user without the plugin: its start-up hook off too
        env["ESPNET_OTREG_AUTOLOAD"] = "0"
    r = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def _decode(mode, tag, wavs, cwd, folder=None):
    args = ["-c", DECODE, mode, tag, json.dumps(wavs)] + ([folder] if folder else [])
    r = _py(*args, cwd=cwd, block=mode == "block")
    line = {l.split(" ", 1)[0]: l.split(" ", 1)[1] for l in r.stdout.splitlines()
            if l.startswith(("HYPS ", "MODEL "))}
    return json.loads(line["HYPS"]), line["MODEL"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A recipe dir holding a 'trained' tiny GM-OT model in exp/, packed as stage 14 does."""
    work = tmp_path_factory.mktemp("zoo")
    exp = work / "exp" / "asr_train_asr_gmot"
    stats = work / "exp" / "asr_stats" / "train" / "feats_stats.npz"
    stats.parent.mkdir(parents=True)
    n_mels = 20
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, n_mels))
    np.savez(stats, count=np.array(500), sum=x.sum(0), sum_square=(x ** 2).sum(0))
    conf_dir = work / "conf"
    conf_dir.mkdir()
    config = tiny_config(conf_dir)
    code = f"""
import sys, torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump
from espnet_otreg.tasks.asr import GMOTASRTask
args = GMOTASRTask.get_parser().parse_args(["--config", "{config}", "--output_dir", "{exp}",
    "--normalize", "global_mvn", "--normalize_conf", "stats_file={stats.relative_to(work)}"])
torch.manual_seed(0)
model = GMOTASRTask.build_model(args)
with torch.no_grad():  # a random model that emits characters, not only blanks
    model.ctc.ctc_lo.bias.normal_(0, 3.0)
    model.ctc.ctc_lo.bias[0] = -5.0
import pathlib; pathlib.Path("{exp}").mkdir(parents=True, exist_ok=True)
torch.save(model.state_dict(), "{exp}/valid.cer_ctc.ave.pth")
with open("{exp}/config.yaml", "w", encoding="utf-8") as f:
    yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
"""
    _py("-c", code, cwd=work)
    # RESULTS.md with a metric line, as local/make_results.py writes it.
    from espnet_otreg.recipe.results import metric_line, write_results

    write_results(exp / "RESULTS.md", title="AISHELL-1, character error rate (%)", intro=["x"],
                  sections=["|system|test CER|", "|---|---|", "|GM-OT|7.25|"],
                  metrics=[metric_line(system="GM-OT", dataset="AISHELL-1", split="test",
                                       metric="cer", value=7.25, decoding="decode_ctc_greedy")])
    rel = exp.relative_to(work)
    gmot_zip, export_zip = rel / "asr_model_valid.cer_ctc.ave.zip", rel / "asr_model_valid.cer_ctc.ave_export_ctc.zip"
    _py("-m", "espnet2.bin.pack", "asr", "--asr_train_config", rel / "config.yaml",
        "--asr_model_file", rel / "valid.cer_ctc.ave.pth", "--option", stats.relative_to(work),
        "--option", rel / "RESULTS.md", "--outpath", gmot_zip, cwd=work)
    _py("-m", "espnet_otreg.bin.export_ctc", "--asr_train_config", rel / "config.yaml",
        "--asr_model_file", rel / "valid.cer_ctc.ave.pth", "--output_dir", rel / "export_ctc", cwd=work)
    _py("-m", "espnet2.bin.pack", "asr", "--asr_train_config", rel / "export_ctc/config.yaml",
        "--asr_model_file", rel / "export_ctc/model.pth", "--option", rel / "export_ctc/feats_stats.npz",
        "--option", rel / "RESULTS.md", "--outpath", export_zip, cwd=work)
    hf = rel / "hf_train_asr_gmot"
    _py("-m", "espnet_otreg.recipe.zoo", "prepare", "--packed", export_zip, "--out", hf,
        "--extra", gmot_zip, "--results", rel / "RESULTS.md", "--repo", "someone/aishell_gmot",
        "--language", "zh", "--dataset", "aishell", "--model_name", "tiny GM-OT", cwd=work)
    wavs = {}
    for i in range(3):
        p = work / "wav" / f"u{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, (rng.standard_normal(8000 + 2000 * i) * 0.1).astype("float32"), 16000)
        wavs[f"u{i}"] = str(p)
    yield dict(work=work, gmot_zip=work / gmot_zip, export_zip=work / export_zip,
               hf=work / hf, wavs=wavs)
    # from_pretrained(<zip>) unpacks into espnet_model_zoo's cache dir: remove ours.
    from espnet_model_zoo.downloader import ModelDownloader, str_to_hash

    for z in (work / gmot_zip, work / export_zip):
        d = ModelDownloader().cachedir / str_to_hash(z.absolute())
        if d.is_dir():
            shutil.rmtree(d)


def test_export_zip_loads_with_stock_espnet_only(recipe, tmp_path):
    hyps, model = _decode("block", str(recipe["export_zip"]), recipe["wavs"], cwd=tmp_path)
    assert model == "ESPnetASRModel"
    assert any(hyps.values()), hyps  # a real decode, not only blanks
    assert set("".join(hyps.values())) <= set(CHARS) | {"<unk>"}


def test_gmot_zip_loads_after_import_espnet_otreg(recipe, tmp_path):
    hyps, model = _decode("import", str(recipe["gmot_zip"]), recipe["wavs"], cwd=tmp_path)
    assert model == "ESPnetGMOTModel"
    export, _ = _decode("block", str(recipe["export_zip"]), recipe["wavs"], cwd=tmp_path)
    assert hyps == export  # the export decodes exactly like the GM-OT model


def test_gmot_zip_needs_espnet_otreg(recipe, tmp_path):
    r = _py("-c", DECODE, "block", str(recipe["gmot_zip"]), json.dumps(recipe["wavs"]),
            cwd=tmp_path, check=False, block=True)
    assert r.returncode != 0 and "gmot" in r.stderr


def test_stage16_folder_loads_like_a_hub_model(recipe, tmp_path):
    hf = recipe["hf"]
    assert (hf / "meta.yaml").is_file() and (hf / recipe["gmot_zip"].name).is_file()
    hyps, model = _decode("block", "someone/aishell_gmot", recipe["wavs"], cwd=tmp_path,
                          folder=str(hf))
    export, _ = _decode("block", str(recipe["export_zip"]), recipe["wavs"], cwd=tmp_path)
    assert model == "ESPnetASRModel" and hyps == export


def test_model_card(recipe):
    from huggingface_hub import ModelCard

    card = ModelCard.load(recipe["hf"] / "README.md")
    d = card.data
    assert d.library_name == "espnet" and d.language == ["zh"] and d.datasets == ["aishell"]
    assert d.license == "apache-2.0"
    (res,) = d.eval_results
    assert (res.metric_type, res.metric_value, res.dataset_split) == ("cer", 7.25, "test")
    assert 'Speech2Text.from_pretrained("someone/aishell_gmot"' in card.text
    assert "import espnet_otreg" in card.text  # how to load the GM-OT zip beside it


def test_load_folder_helper(recipe, tmp_path):
    from espnet_otreg.recipe.zoo import load_folder

    kw = load_folder(recipe["hf"], tmp_path)
    assert Path(kw["asr_train_config"]).is_file() and Path(kw["asr_model_file"]).is_file()
    assert str(tmp_path) in Path(kw["asr_train_config"]).read_text()  # paths rewritten


def test_upload_needs_token_from_env_only(recipe):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-m", "espnet_otreg.recipe.zoo", "upload", "--dir",
                        str(recipe["hf"]), "--repo", "someone/x"], capture_output=True,
                       text=True, env=env)
    assert r.returncode != 0 and "set HF_TOKEN" in r.stderr
