"""Integration: egs2/fleurs_otreg/asr1 `run.sh --mini true`, every stage on CPU.

Synthetic two-language corpus in the FLEURS layout (+ a Common-Voice-layout
cross-domain set), tiny random Whisper encoder and causal LM built offline, phase 1
then phase 2 (OTReg), decoding with 2 jobs, per-language scoring, modality gap,
RESULTS.md and packing. The trained model must clearly beat chance: WER < 60%.
Everything goes under mini/ (data, dump, exp, RESULTS.md): the committed RESULTS.md stays.
"""

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from recipe_helpers import copy_recipe

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "fleurs_otreg" / "asr1"
REPO = RECIPE.parents[2]
MAX_WER = 60.0


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    work = copy_recipe(RECIPE, tmp_path_factory.mktemp("fleurs_mini") / "asr1")
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    t0 = time.time()
    # Generous: on a shared 2-core machine under load ~7 one run needed over 14 min.
    r = subprocess.run(["bash", "run.sh", "--mini", "true"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=1600)
    elapsed = time.time() - t0
    assert r.returncode == 0, f"run.sh failed after {elapsed:.0f} s:\n{r.stderr[-5000:]}"
    print(f"run.sh --mini true: {elapsed:.0f} s")
    return work, env, r


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_every_stage_and_wer(mini_run):
    work, _, r = mini_run
    log = r.stderr
    for stage in (1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 16):
        assert f"Stage {stage}:" in log, f"stage {stage} did not run"
    # Data: both languages, utt2lang, the cross-domain set.
    for dset in ("train", "dev", "test", "test_covost2"):
        langs = set((work / "mini/dump/raw" / dset / "utt2lang").read_text().split()[1::2])
        assert langs == {"en_us", "de_de"}, (dset, langs)
    assert "kept" in (work / "mini/dump/raw/train/filter_counts.json").read_text()
    assert (work / "mini/dump/raw/train/token_stats.md").is_file()
    # Training: phase 1 (the projector only: the checkpoint holds just what trains) then
    # phase 2 from it, with the OT loss and its plan's entropy in the stats.
    import torch

    p1 = torch.load(work / "mini/exp/slm_train_slm_phase1/valid.acc.ave.pth", map_location="cpu")
    assert p1 and all(k.startswith("projector.") for k in p1), sorted(p1)[:5]
    p2 = work / "mini/exp/slm_train_slm_otreg"
    assert "init_param" in (p2 / "config.yaml").read_text()
    assert (p2 / "valid.acc.ave.pth").exists()
    results = [ln for ln in (p2 / "train.log").read_text().splitlines() if "epoch results" in ln]
    assert results and "loss_ot=" in results[-1] and "ot_entropy=" in results[-1]
    # Scores: a learned model, in- and cross-domain, per language.
    dec = next(p2.glob("decode_*"))
    for dset in ("test", "test_covost2"):
        s = json.loads((dec / dset / "score/scores.json").read_text())
        assert set(s["langs"]) == {"en_us", "de_de"}
        assert all(v["metric"] == "wer" for v in s["langs"].values())
        print(dset, "WER", s["avg"], {k: v["rate"] for k, v in s["langs"].items()})
        if dset == "test":
            assert s["avg"] < MAX_WER, f"mini WER {s['avg']} is not clearly below 100%"
        hyp = (dec / dset / "text").read_text().splitlines()
        assert len(hyp) == 32
    gap = json.loads((p2 / "modality_gap/test/modality_gap.json").read_text())["summary"]
    assert gap["n_utts"] == 32 and gap["retrieval_r1"] >= 0
    assert gap["speech_norm"] > 0 and gap["text_norm"] > 0
    assert (p2 / "modality_gap/test/modality_gap.png").stat().st_size > 1000
    assert "| en_us |" in (p2 / "modality_gap/test/modality_gap.md").read_text()
    # RESULTS.md: our numbers with their sources, baselines "-", the paper's marked.
    # --mini writes everything under mini/, its RESULTS.md too (never the committed one)
    assert not (work / "RESULTS.md").exists() and not (work / "exp").exists()
    res = (work / "mini/RESULTS.md").read_text()
    ours = json.loads((dec / "test/score/scores.json").read_text())["avg"]
    assert re.search(rf"\| OTReg \(`slm_train_slm_otreg`\) \|.*\| {ours:.2f} \|.*6\.90 \(published\) \|", res)
    assert "| base SLM | - |" in res and "(mini synthetic corpus" in res
    # Pack: an ESPnet zip with meta.yaml, the config and the weights.
    z = zipfile.ZipFile(next(p2.glob("*_packed.zip")))
    names = z.namelist()
    assert "meta.yaml" in names and any(n.endswith("config.yaml") for n in names)
    assert any(n.endswith(".pth") for n in names)
    assert "upload skipped" in log


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rerun_resumes_instead_of_redoing(mini_run):
    """Stages are restartable: finished phase 1 is kept, phase 2 resumes from its
    checkpoint (no epoch retrained), finished decoding jobs are not rerun."""
    work, env, _ = mini_run
    p2 = work / "mini/exp/slm_train_slm_otreg"
    n_epochs = len(re.findall(r"epoch results", (p2 / "train.log").read_text()))
    dec = next(p2.glob("decode_*")) / "test/logdir"
    stamps = {p: p.stat().st_mtime for p in dec.glob("output.*/text")}
    r = subprocess.run(["bash", "run.sh", "--mini", "true", "--stage", "11", "--stop_stage", "12"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "phase 1 done" in r.stderr
    assert len(re.findall(r"epoch results", (p2 / "train.log").read_text())) == 0  # resumed: nothing left
    assert len(re.findall(r"epoch results", (p2 / "train.1.log").read_text())) == n_epochs  # kept
    assert {p: p.stat().st_mtime for p in dec.glob("output.*/text")} == stamps
