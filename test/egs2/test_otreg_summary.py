"""egs2/fleurs_otreg/asr1/local/summarize_otreg_experiment.py on synthetic runs in
run.sh's layout: CER, shift penalty, paired tables with bootstrap, modality gap,
plots; and an archive of the runs (espnet_otreg.recipe.archive --keep) prints the same."""

import json
import tarfile
from pathlib import Path

import pytest

from recipe_helpers import load_local

RECIPE = Path(__file__).resolve().parents[2] / "egs2/fleurs_otreg/asr1"
SETS = ["test", "test_everyday"]
DEC = "decode_slm_asr_model_valid.acc.ave"


def _run(exp: Path, name: str, seed: int, errs: dict, gap: float, decoded: bool = True,
         hyp: str = "我们规来"):
    d = exp / f"slm_otreg_{name}_seed{seed}"
    d.mkdir(parents=True)
    (d / "train.log").write_text(
        f"[vm] x INFO: 1epoch results: [train] loss=3.0, [valid] acc={0.5 + gap:.2f}, loss_ce=2.0\n"
        f"[vm] x INFO: 2epoch results: [train] loss=2.0, [valid] acc={0.6 + gap:.2f}, loss_ce=1.5\n")
    for s in SETS:
        g = d / "modality_gap" / s
        g.mkdir(parents=True)
        summary = dict(matched_cos=gap, retrieval_r1=gap / 2, retrieval_r5=gap, ot_cost=1 - gap)
        if name != "phase1":  # a report from before the norms were measured has none
            summary.update(speech_norm=10 * gap, text_norm=0.8)
        (g / "modality_gap.json").write_text(json.dumps({"summary": summary}))
        if not decoded:
            continue
        sc = d / DEC / s / "score"
        sc.mkdir(parents=True)
        e = errs[s]
        rate = 100 * sum(e) / (10 * len(e))
        (sc / "scores.json").write_text(json.dumps({"avg": round(rate, 2)}))
        (sc / "per_utt.txt").write_text("".join(
            f"u{i}\tcmn_hans_cn\terr={x}/10\n  REF: 我们归来\n  HYP: {hyp}\n" for i, x in enumerate(e)))


def _exp(root: Path) -> Path:
    exp = root / "exp"
    for seed in (0, 1, 2):
        # base: 1 error per utterance in-domain, 3 on the shifted set; OTReg: 1 and 2
        _run(exp, "base", seed, {"test": [1] * 20, "test_everyday": [3 + (seed == 1)] * 20}, 0.2)
        _run(exp, "otreg", seed, {"test": [1] * 20, "test_everyday": [2] * 19 + [seed]}, 0.5,
             hyp="你们规来")
        _run(exp, "phase1", seed, {}, 0.1, decoded=False)
    return exp


def test_tables_and_plots(tmp_path):
    mod = load_local(RECIPE, "summarize_otreg_experiment")
    exp = _exp(tmp_path)
    md = mod.main(["--exp", str(exp), "--sets", *SETS, "--ref", "base", "--n_boot", "300",
                   "--plot", str(tmp_path / "cer.png"), "--curves", str(tmp_path / "c.png"),
                   "--gap_plot", str(tmp_path / "gap.png")])
    assert "| base | 10.00 ± 0.00 | 33.33 ± 5.77 | 3 |" in md
    assert "| otreg | 10.00 ± 0.00 |" in md
    # syllable error rate from the transcripts: base's 规 for 归 is a homophone (no error),
    # OTReg's 你 for 我 is not (1 of 4 syllables)
    ser = md.split("Syllable error rate")[1].split("Shift penalty")[0]
    assert "| base | 0.00 ± 0.00 | 0.00 ± 0.00 | 3 |" in ser
    assert "| otreg | 25.00 ± 0.00 | 25.00 ± 0.00 | 3 |" in ser
    # shift penalty: base 23.33 ± 5.77, OTReg less
    assert "| base | 23.33 ± 5.77 |" in md
    lines = [x for x in md.splitlines() if x.startswith("| otreg | test_everyday |")]
    paired, gap = lines[0], lines[-1]
    cells = [c.strip() for c in paired.split("|")]
    assert cells[3].startswith("-13.") and cells[5] == "3"
    lo, hi = (float(x) for x in cells[6].split("[")[1].rstrip("]").split(","))
    assert lo <= float(cells[6].split()[0]) <= hi < 0  # bootstrap interval below 0
    assert "| otreg | test | 0.00 ± 0.00 | – | 3 | +0.00 [+0.00, +0.00] |" in md
    # otreg as a second reference: every system still has one row per table
    md2 = mod.main(["--exp", str(exp), "--sets", *SETS, "--ref", "base", "--ref", "otreg",
                    "--n_boot", "50"])
    assert md2.count("| otreg | 10.00 ± 0.00 |") == 1
    assert "| system − otreg |" in md2
    # REF:SYS pairs only the systems named
    md3 = mod.main(["--exp", str(exp), "--sets", *SETS, "--ref", "otreg:base", "--n_boot", "50"])
    assert "| base | test | 0.00 ± 0.00 |" in md3 and "| system − base |" not in md3
    # --systems: one study's runs out of an exp dir that holds several
    md4 = mod.main(["--exp", str(exp), "--sets", *SETS, "--systems", "base", "phase1", "--n_boot", "50"])
    assert "| base | 10.00 ± 0.00 |" in md4 and "| otreg |" not in md4 and "| phase1 | 0.600" in md4
    with pytest.raises(SystemExit, match="--systems otreg_cos: no run"):
        mod.main(["--exp", str(exp), "--sets", *SETS, "--systems", "base", "otreg_cos"])
    with pytest.raises(SystemExit, match="want REF or REF:SYS,SYS"):
        mod.main(["--exp", str(exp), "--sets", *SETS, "--ref", "otreg:"])
    # modality gap: phase-1 rows too (no scores), one OT setting
    assert "| phase1 | test | 0.100 ± 0.000 | 0.050 ± 0.000 |" in md
    assert "| phase1 | test | 0.100 ± 0.000 | 0.050 ± 0.000 | 0.100 ± 0.000 | 0.900 ± 0.000 | – | – | 3 |" in md
    assert gap.startswith("| otreg | test_everyday | 0.500 ± 0.000")
    assert gap.endswith("| 5.000 ± 0.000 | 0.800 ± 0.000 | 3 |")  # speech and text norms
    # phase 1: the frozen LM's validation accuracy per epoch (no phase 2 row of its own)
    assert "| phase-1 model | epoch 1 | epoch 2 | seeds |" in md
    assert "| phase1 | 0.600 ± 0.000 | 0.700 ± 0.000 | 3 |" in md
    assert "| otreg | 2 | 1.100 ± 0.000 | 1.500 ± 0.000 |" in md  # last validation epoch
    for png in ("cer.png", "c.png", "gap.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_an_archive_with_kept_files_prints_the_same(tmp_path):
    from espnet_otreg.recipe.archive import main as archive_main

    mod = load_local(RECIPE, "summarize_otreg_experiment")
    exp = _exp(tmp_path)
    ref = mod.main(["--exp", str(exp), "--sets", *SETS, "--n_boot", "200"])
    out = tmp_path / "runs.tar.gz"
    archive_main(["--recipe_dir", str(RECIPE), "--exp", str(exp), "--runs", "slm_otreg_*",
                  "--keep", "*/*/score/per_utt.txt", "modality_gap/*/modality_gap.json",
                  "--out", str(out)])
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    again = mod.main(["--exp", str(tmp_path / "unpacked/exp"), "--sets", *SETS, "--n_boot", "200"])
    assert again.replace(str(tmp_path / "unpacked/exp"), "") == ref.replace(str(exp), "")


def test_plot_colours_stay_distinct_past_ten_systems():
    mod = load_local(RECIPE, "summarize_otreg_experiment")
    for n in (3, 10, 14):
        colors = mod._colors(n)
        assert len(colors) == n and len({str(c) for c in colors}) == n
