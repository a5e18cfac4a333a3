"""Every training config of the AISHELL recipe builds its model (paper sizes, CPU, no
teacher download: cached-teacher configs never load the teacher at build time), and
the decode configs are valid Speech2Text options."""

import inspect
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "egs2" / "aishell_gmot" / "asr1" / "conf"
TRAIN_CONFIGS = sorted(CONF.glob("train_*.yaml")) + sorted((CONF / "tuning").glob("*.yaml")) \
    + sorted((CONF / "mini").glob("train_*.yaml"))


def _build(config: Path, tmp_path: Path):
    from espnet_otreg.tasks.asr import GMOTASRTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>"] + list("我你他是的") + ["<sos/eos>"]) + "\n",
                      encoding="utf-8")
    parser = GMOTASRTask.get_parser()
    args = parser.parse_args(["--config", str(config), "--token_list", str(tokens),
                              "--output_dir", str(tmp_path / "exp")])
    return GMOTASRTask.build_model(args)


@pytest.mark.parametrize("config", TRAIN_CONFIGS, ids=lambda p: str(p.relative_to(CONF)))
def test_train_config_builds(config, tmp_path):
    c = yaml.safe_load(config.read_text(encoding="utf-8"))
    model = _build(config, tmp_path)
    n = sum(p.numel() for p in model.parameters())
    assert model.ctc is not None and model.decoder is None  # CTC-only, as in the paper
    assert c["best_model_criterion"][0] == ["valid", "cer_ctc", "min"]  # valid.cer_ctc.ave.pth
    if "mini" not in config.parts:
        assert c["encoder_conf"]["num_blocks"] == 16  # the paper's encoder depth
        assert n > 20e6, n
    if c.get("model") == "gmot":
        mc = c["model_conf"]
        assert mc["teacher_source"] == "cache"
        if config.name == "train_asr_gmot.yaml":
            assert mc["alpha"] == 0.02
        if "ot_cakt" in config.name:
            assert mc["alpha"] == 0.0 and (mc["rho"] > 0) == config.name.startswith("train_asr_tot")


@pytest.mark.parametrize("name", ["decode_ctc_greedy.yaml", "decode_ctc_beam.yaml"])
def test_decode_configs_are_speech2text_options(name):
    from espnet2.bin.asr_inference import Speech2Text

    allowed = set(inspect.signature(Speech2Text.__init__).parameters)
    for path in (CONF / name, CONF / "mini" / name):
        c = yaml.safe_load(path.read_text())
        assert set(c) <= allowed, set(c) - allowed
        assert c["ctc_weight"] == 1.0 and c["lm_weight"] == 0.0
    assert yaml.safe_load((CONF / name).read_text())["beam_size"] == (1 if "greedy" in name else 10)
