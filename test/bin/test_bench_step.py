"""bench_step runs end to end at tiny sizes and prints its JSON line (no timing asserts)."""

import json

import pytest

from espnet_otreg.bin import bench_step


@pytest.mark.parametrize("model", ["gmot", "slm"])
def test_bench_step_tiny(capsys, model):
    bench_step.main(["--model", model, "--repeats", "1", "--warmup", "0", "--no_memory"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["model"] == model and out["step_ratio"] > 0
    assert all(r["step_ms"] > 0 for r in out["rows"].values())


def test_gmot_pair_shares_weights():
    from espnet_otreg.bench.gmot import build_bench_models

    (_, ctc, b1), (_, gmot, b2) = build_bench_models("cpu", "tiny", batch_size=2)
    sd = gmot.state_dict()
    assert all((sd[k] == v).all() for k, v in ctc.state_dict().items())
    assert set(b2) - set(b1) == {"teacher_feats", "teacher_feats_lengths"}


def test_gmot_recipe_preset_is_the_recipe_encoder():
    """The "recipe" preset times the Conformer that conf/train_asr_gmot.yaml trains."""
    from pathlib import Path

    import yaml

    from espnet_otreg.bench.gmot import PRESETS

    conf = Path(__file__).resolve().parents[2] / "egs2/aishell_gmot/asr1/conf/train_asr_gmot.yaml"
    enc = yaml.safe_load(conf.read_text(encoding="utf-8"))["encoder_conf"]
    assert PRESETS["recipe"]["encoder"].items() <= enc.items()
