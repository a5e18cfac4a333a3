"""GM-OT through its command lines, as a recipe runs them (tiny data, CPU).

dump_teacher -> asr_train --collect_stats -> asr_train -> asr_inference (ours)
-> export_ctc -> stock espnet2.bin.asr_inference without espnet_otreg -> same text;
plot_coupling on the trained model.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from gmot_fixtures import CHARS, TEACHER_DIM, tiny_config, write_data_dir

from espnet_otreg.asr.tiny import build_tiny_bert

pytestmark = pytest.mark.slow

UTTS = {
    f"utt{i:02d}": "".join(CHARS[(i + k) % len(CHARS)] for k in range(2 + i % 3))
    for i in range(8)
}
UTTS["utt08"] = UTTS["utt01"]  # same transcript: shares the cached matrix


def _run(module, *args, block_espnet_otreg=False):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    if block_espnet_otreg:  # stock ESPnet alone: the plugin's start-up hook off too
        env["ESPNET_OTREG_AUTOLOAD"] = "0"
    pre = "import sys; sys.modules['espnet_otreg'] = None; " if block_espnet_otreg else ""
    code = pre + f"import sys; from {module} import main; main(sys.argv[1:])"
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"{module} failed:\n{r.stderr[-4000:]}"
    return r


def _data_args(data, teacher_scp):
    """Speech, text and cached teacher features, for training and validation alike."""
    out = []
    for split in ("train", "valid"):
        out += [
            f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
            f"--{split}_data_path_and_name_and_type", f"{data}/text,text,text",
            f"--{split}_data_path_and_name_and_type", f"{teacher_scp},teacher_feats,kaldi_ark",
        ]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gmot_cli")
    data = write_data_dir(tmp / "data", UTTS)
    build_tiny_bert(tmp / "bert", UTTS.values(), hidden_size=TEACHER_DIM)
    config = tiny_config(tmp, ot_max_iter=3, ot_inner_max_iter=20)
    _run("espnet_otreg.bin.dump_teacher", "--asr_config", config, "--text", data / "text",
         "--output_dir", tmp / "teacher", "--batch_size", 3)
    common = [
        "--config", config, "--ngpu", 0, "--num_workers", 0, "--use_preprocessor", "true",
        "--token_type", "char", "--token_list", tmp / "tokens.txt",
        "--non_linguistic_symbols", "none", "--cleaner", "none", "--g2p", "none",
    ]
    common += _data_args(data, tmp / "teacher/feats.scp")
    _run("espnet_otreg.bin.asr_train", *common, "--collect_stats", "true",
         "--train_shape_file", data / "wav.scp", "--valid_shape_file", data / "wav.scp",
         "--output_dir", tmp / "stats")
    r = _run("espnet_otreg.bin.asr_train", *common,
         "--normalize", "global_mvn", "--normalize_conf", f"stats_file={tmp}/stats/train/feats_stats.npz",
         "--train_shape_file", tmp / "stats/train/speech_shape",
         "--valid_shape_file", tmp / "stats/valid/speech_shape",
         "--batch_size", 4, "--fold_length", 80000, "--max_epoch", 2, "--keep_nbest_models", 1,
         "--best_model_criterion", "valid,cer_ctc,min",
         "--output_dir", tmp / "exp")
    (tmp / "exp/train.log").write_text(r.stderr)  # as a recipe redirects it
    return tmp


def test_dump_teacher_cache(trained):
    import kaldiio

    feats = kaldiio.load_scp(str(trained / "teacher/feats.scp"))
    assert set(feats) == set(UTTS)
    for uid, text in UTTS.items():
        assert feats[uid].shape == (len(text), TEACHER_DIM)
    locs = dict(line.split() for line in (trained / "teacher/feats.scp").read_text().splitlines())
    assert locs["utt08"] == locs["utt01"]
    # Restartable: a second run finds the cache complete and leaves it alone.
    mtime = (trained / "teacher/feats.ark").stat().st_mtime_ns
    r = _run("espnet_otreg.bin.dump_teacher", "--asr_config", trained / "config.yaml",
             "--text", trained / "data/text", "--output_dir", trained / "teacher")
    assert "nothing to do" in r.stderr
    assert (trained / "teacher/feats.ark").stat().st_mtime_ns == mtime


def test_training_logged_gmot_stats(trained):
    log = (trained / "exp/train.log").read_text()
    for key in ("loss_gmot", "loss_align", "loss_ctc_fused", "coupling_monotonic", "cer_ctc"):
        assert key in log, key
    assert (trained / "exp/valid.cer_ctc.ave.pth").exists()
    assert (trained / "exp/images/loss_gmot.png").exists()  # ESPnet plots every stat
    assert any((trained / "exp/tensorboard").rglob("events.out.tfevents.*"))


def test_config_round_trip_through_task(trained):
    from espnet_otreg.tasks.asr import GMOTASRTask

    model, args = GMOTASRTask.build_model_from_file(
        trained / "exp/config.yaml", trained / "exp/valid.cer_ctc.ave.pth", "cpu"
    )
    assert args.model == "gmot" and type(model).__name__ == "ESPnetGMOTModel"
    saved = torch.load(trained / "exp/valid.cer_ctc.ave.pth", map_location="cpu")
    assert set(saved) == set(model.state_dict())
    model.load_state_dict(saved, strict=True)
    conf = yaml.safe_load((trained / "exp/config.yaml").read_text())
    assert conf["model_conf"]["teacher_dim"] == TEACHER_DIM
    assert model.gmot.alpha == 0.02  # the documented default


def test_export_ctc_decodes_identically_with_stock_espnet(trained):
    beam = 3  # beam search (beam 1 is the same code path with one hypothesis)
    exp = trained / "exp"
    export = trained / "export"
    if not (export / "model.pth").exists():
        _run("espnet_otreg.bin.export_ctc", "--asr_train_config", exp / "config.yaml",
             "--asr_model_file", exp / "valid.cer_ctc.ave.pth", "--output_dir", export)
    conf = yaml.safe_load((export / "config.yaml").read_text())
    assert conf["model"] == "espnet"
    assert not set(conf["model_conf"]) & {"alpha", "beta", "teacher", "lambda_"}
    assert Path(conf["normalize_conf"]["stats_file"]).parent == export

    # Key sets explicitly: ESPnet's loader (strict=False) would hide a missing key.
    from espnet2.tasks.asr import ASRTask

    stock, _ = ASRTask.build_model_from_file(export / "config.yaml", export / "model.pth", "cpu")
    exported = torch.load(export / "model.pth", map_location="cpu")
    trained_sd = torch.load(exp / "valid.cer_ctc.ave.pth", map_location="cpu")
    assert set(exported) == set(stock.state_dict())
    assert set(trained_sd) - set(exported) == {
        k for k in trained_sd if k.startswith(("adapter.", "fusion.", "ctc_fused."))
    }
    assert type(stock).__name__ == "ESPnetASRModel"

    decode = ["--data_path_and_name_and_type", f"{trained}/data/wav.scp,speech,sound",
              "--ngpu", 0, "--batch_size", 1, "--ctc_weight", 1.0, "--lm_weight", 0.0,
              "--beam_size", beam]
    _run("espnet_otreg.bin.asr_inference", *decode, "--asr_train_config", exp / "config.yaml",
         "--asr_model_file", exp / "valid.cer_ctc.ave.pth", "--output_dir", trained / f"dec_ours{beam}")
    _run("espnet2.bin.asr_inference", *decode, "--asr_train_config", export / "config.yaml",
         "--asr_model_file", export / "model.pth", "--output_dir", trained / f"dec_stock{beam}",
         block_espnet_otreg=True)
    ours = (trained / f"dec_ours{beam}/1best_recog/text").read_text()
    theirs = (trained / f"dec_stock{beam}/1best_recog/text").read_text()
    assert len(ours.splitlines()) == len(UTTS)
    assert ours == theirs


def test_plot_coupling(trained):
    out = trained / "plots"
    _run("espnet_otreg.bin.plot_coupling", "--asr_train_config", trained / "exp/config.yaml",
         "--asr_model_file", trained / "exp/valid.cer_ctc.ave.pth",
         "--data_path_and_name_and_type", f"{trained}/data/wav.scp,speech,sound",
         "--data_path_and_name_and_type", f"{trained}/data/text,text,text",
         "--data_path_and_name_and_type", f"{trained}/teacher/feats.scp,teacher_feats,kaldi_ark",
         "--utt_ids", "utt01,utt03", "--output_dir", out)
    import numpy as np

    for uid in ("utt01", "utt03"):
        png = out / f"{uid}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        plan = np.load(out / f"{uid}.npy")
        assert plan.shape[1] == len(UTTS[uid]) and abs(plan.sum() - 1.0) < 1e-3


def test_plot_labels_cjk_by_position_without_a_cjk_font(tmp_path, monkeypatch, caplog):
    """No CJK font: Chinese tokens would render as boxes, so they are labelled by
    position and the log says which font package to install."""
    import numpy as np
    from matplotlib import font_manager

    from espnet_otreg.bin import plot_coupling

    monkeypatch.setattr(font_manager.fontManager, "ttflist",
                        [f for f in font_manager.fontManager.ttflist if f.name == "DejaVu Sans"])
    plan = np.full((6, 2), 1 / 12)
    with caplog.at_level("WARNING"):
        plot_coupling.plot(plan, ["个", "小"], "t", tmp_path / "a.png")
    assert "no CJK font" in caplog.text and (tmp_path / "a.png").stat().st_size > 1000
    caplog.clear()
    plot_coupling.plot(plan, ["a", "b"], "t", tmp_path / "b.png")
    assert "no CJK font" not in caplog.text


def test_stock_espnet_entry_points_know_gmot(trained, tmp_path):
    """What ESPnet's own asr.sh runs, after ``pip install espnet-otreg`` and nothing else:
    ``python -m espnet2.bin.asr_train`` trains ``model: gmot`` (the cached teacher
    features come in as a variable data key) and ``python -m espnet2.bin.asr_inference``
    decodes it. The interpreters never import espnet_otreg by hand: the package's
    start-up hook (setup.py) registers the model when ESPnet's ASR task is imported."""
    import site

    hooks = [Path(d) / "espnet_otreg-startup.pth" for d in site.getsitepackages()]
    assert any(h.is_file() for h in hooks), (
        f"no start-up hook in {site.getsitepackages()}: reinstall (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ESPNET_OTREG_AUTOLOAD")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")

    def stock(module, *args):
        r = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{module} failed:\n{r.stderr[-4000:]}"
        return r

    # The hook is what does it: without it, stock ESPnet does not know the model.
    probe = "import espnet2.tasks.asr as t; print('gmot' in t.model_choices.classes)"
    for autoload, known in (("1", "True"), ("0", "False")):
        r = subprocess.run([sys.executable, "-c", probe], env=dict(env, ESPNET_OTREG_AUTOLOAD=autoload),
                           capture_output=True, text=True)
        assert r.stdout.split()[-1:] == [known], (autoload, r.stdout, r.stderr[-2000:])

    data, exp = trained / "data", tmp_path / "exp"
    split_data = _data_args(data, trained / "teacher/feats.scp")
    r = stock("espnet2.bin.asr_train", "--config", trained / "config.yaml", "--ngpu", 0,
          "--num_workers", 0, "--use_preprocessor", "true", "--token_type", "char",
          "--token_list", trained / "tokens.txt", "--cleaner", "none", "--g2p", "none",
          "--non_linguistic_symbols", "none", "--allow_variable_data_keys", "true",
          *split_data, "--normalize", "global_mvn",
          "--normalize_conf", f"stats_file={trained}/stats/train/feats_stats.npz",
          "--train_shape_file", trained / "stats/train/speech_shape",
          "--valid_shape_file", trained / "stats/valid/speech_shape",
          "--batch_size", 4, "--fold_length", 80000, "--max_epoch", 1, "--output_dir", exp)
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    assert conf["model"] == "gmot"
    assert "loss_gmot" in r.stderr  # the GM-OT stats, in the trainer's epoch summary
    stock("espnet2.bin.asr_inference", "--data_path_and_name_and_type",
          f"{data}/wav.scp,speech,sound", "--ngpu", 0, "--batch_size", 1, "--ctc_weight", 1.0,
          "--lm_weight", 0.0, "--beam_size", 1, "--asr_train_config", exp / "config.yaml",
          "--asr_model_file", exp / "1epoch.pth", "--output_dir", tmp_path / "dec")
    hyps = (tmp_path / "dec/1best_recog/text").read_text(encoding="utf-8").splitlines()
    assert {line.split(maxsplit=1)[0] for line in hyps} == set(UTTS)
