"""The AISHELL-1 GM-OT recipe end to end on the synthetic mini corpus (CPU):
``./run.sh --mini true`` runs stages 1-16 (16, the upload, is skipped unless asked),
and the trained model's CER must be far below chance. Then a second run must find
every stage done and change nothing it already wrote."""

import os
import subprocess
from pathlib import Path

import pytest
from recipe_helpers import copy_recipe

from espnet_otreg.data.scoring import parse_result

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "aishell_gmot" / "asr1"
# Chance: the mini corpus has 16 characters; guessing uniformly at the right length
# gives ~94% CER, emitting nothing gives 100%.
MAX_CER = 40.0


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_mini_recipe_all_stages(tmp_path):
    work = copy_recipe(RECIPE, tmp_path / "asr1")
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(os.sys.executable).parent}:{env['PATH']}"
    r = subprocess.run(["bash", "run.sh", "--mini", "true"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=1700)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    for n in (1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16):
        assert f"Stage {n}:" in log, f"stage {n} did not run"
    assert "Stage 16: skipped" in log

    exp = work / "mini" / "exp" / "asr_train_asr_gmot"
    cers = {}
    for dec in ("decode_ctc_greedy", "decode_ctc_beam"):
        for dset in ("dev", "test"):
            res = exp / f"{dec}_asr_model_valid.cer_ctc.ave" / dset / "score_cer" / "result.txt"
            cers[dec, dset] = parse_result(res)["cer"]
            # every utterance was decoded (the nj split/merge lost none)
            n_ref = len((work / "mini" / "dump" / "raw" / dset / "text").read_text().splitlines())
            assert parse_result(res)["n_snt"] == n_ref
    print("mini CERs:", cers)
    assert all(c < MAX_CER for c in cers.values()), cers

    results = (work / "mini" / "RESULTS.md").read_text(encoding="utf-8")
    assert f"{cers['decode_ctc_greedy', 'test']:.2f}" in results
    assert "*(published)*" in results
    assert (exp / "asr_model_valid.cer_ctc.ave.zip").is_file()
    assert (exp / "export_ctc" / "model.pth").is_file()
    assert "decoded identically by stock ESPnet" in log
    # Stage 14 packs the export too; stage 16 lays out the zoo folder with a model card.
    assert (exp / "asr_model_valid.cer_ctc.ave_export_ctc.zip").is_file()
    hf = exp / "hf_train_asr_gmot"
    assert (hf / "meta.yaml").is_file() and (hf / "asr_model_valid.cer_ctc.ave.zip").is_file()
    assert "library_name: espnet" in (hf / "README.md").read_text(encoding="utf-8")
    assert "## Environments" in results and "- espnet version: `espnet " in results
    assert not (work / "RESULTS.md").exists()  # --mini never writes the committed one

    # Idempotent: stages 1-5 again find their work done and rewrite nothing.
    stamp = (work / "mini" / "dump" / "raw" / "org" / "train_sp" / "wav.scp").stat().st_mtime_ns
    r = subprocess.run(["bash", "run.sh", "--mini", "true", "--stop_stage", "5"], cwd=work,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = r.stdout + r.stderr
    assert "already downloaded and verified" in out and "already formatted" in out
    assert "exists" in out  # token list kept
    assert (work / "mini" / "dump" / "raw" / "org" / "train_sp" / "wav.scp").stat().st_mtime_ns == stamp
