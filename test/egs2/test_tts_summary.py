"""local/summarize_tts_experiment.py on fabricated runs: mean/sd per system, paired
differences with t and p, the epoch a run reaches a CER, and the validation curve of a
resumed run put together from its logs."""

import math
from pathlib import Path

import pytest
from recipe_helpers import load_local

RECIPE = Path(__file__).resolve().parents[2] / "egs2/aishell_gmot/asr1"


def _load():
    return load_local(RECIPE, "summarize_tts_experiment")


def _line(epoch, cer, fused=None):
    extra = "" if fused is None else f", loss_ctc_fused={fused}"
    return (f"[vm] 2026 (trainer:394) INFO: {epoch}epoch results: [train] loss=1.0, "
            f"[valid] loss_ctc=2.0, cer_ctc={cer}{extra}, loss=2.0, time=1.2 seconds\n")


def _run(exp, name, seed, test, curve, logs=("train.log",)):
    d = exp / f"asr_sweep_{name}_seed{seed}"
    (d / "dec/test/score_cer").mkdir(parents=True)
    # The recipe's stage-13 layout (local/recipe.yaml): a result.txt whose exact counts
    # give CER = test (%), over 10,000 characters.
    errors = round(test * 100)
    (d / "dec/test/score_cer/result.txt").write_text(
        f"| Sum/Avg | 1 10000 | {100 - test:.1f} {test:.1f} 0.0 0.0 {test:.1f} 100.0 |\n"
        f"Scores: (#C #S #D #I) {10000 - errors} {errors} 0 0\n")
    parts = [curve] if len(logs) == 1 else [curve[:2], curve[2:]]
    start = 1
    for log, part in zip(logs, parts):
        (d / log).write_text("".join(_line(start + i, c, 0.5) for i, c in enumerate(part)))
        start += len(part)


def test_tables_pairs_and_resumed_curves(tmp_path):
    mod = _load()
    exp = tmp_path / "exp"
    for seed, (a, b) in enumerate([(6.0, 5.0), (7.0, 5.5), (8.0, 7.5)]):
        _run(exp, "base", seed, a, [0.9, 0.3, 0.1, 0.08])
        # the second system's runs were resumed: epochs 1-2 in train.before_resume.log
        _run(exp, "new", seed, b, [0.9, 0.15, 0.1, 0.07],
             logs=("train.before_resume.log", "train.log"))
    md = mod.summarize(exp, ["test"], ["base"], reach=20.0)
    assert "| base | 0 1 2 | 7.00 ± 1.00 |" in md
    assert "| new | 0 1 2 | 6.00 ± 1.32 |" in md
    # diffs -1.0 -1.5 -0.5: mean -1.00, sd 0.50, t = -1 / (0.5 / sqrt 3) = -3.46, p = 0.074
    assert "| new | 0 1 2 | -1.00 -1.50 -0.50 | -1.00 ± 0.50 | -3.46 (0.07) |" in md
    # epochs to < 20 %: 3 for base, 2 for new; the resumed curve has all 4 epochs
    assert "| 3.0 ± 0.0 |" in md and "| 2.0 ± 0.0 |" in md
    assert "| new | 90.0 | 15.0 | 10.0 | 7.0 |" in md
    assert mod.t_test([1.0]) == (None, None)
    # equal differences up to float rounding: no finite t, not a huge one
    assert mod.t_test([4.68 - 4.93, 4.62 - 4.87]) == (-math.inf, 0.0)
    assert mod.t_test([0.0, 1e-17]) == (None, None)


def test_a_later_log_wins_for_an_epoch(tmp_path):
    mod = _load()
    d = tmp_path / "asr_sweep_x_seed0"
    d.mkdir()
    (d / "train.2.log").write_text(_line(1, 0.9) + _line(2, 0.5))
    (d / "train.1.log").write_text(_line(2, 0.4) + _line(3, 0.3))
    (d / "train.log").write_text("")  # a rerun with nothing left to train
    assert [e["cer_ctc"] for e in mod.run_curve(d)] == pytest.approx([0.9, 0.4, 0.3])


def test_chosen_pairs_epoch_columns_and_curve_plot(tmp_path):
    mod = _load()
    exp = tmp_path / "exp"
    for seed, (a, b) in enumerate([(6.0, 5.0), (7.0, 5.5)]):
        _run(exp, "ctc_ep4", seed, a, [0.9, 0.3, 0.1, 0.08])
        _run(exp, "gmot_ep4", seed, b, [0.9, 0.2, 0.1, 0.06])
    _run(exp, "gmot", 0, 9.0, [0.9, 0.5])
    (exp / "asr_sweep_gmot_ep8_seed0").mkdir()  # still training: no scores, no row
    (exp / "asr_sweep_gmot_ep8_seed0/train.log").write_text(_line(5, 0.1))
    md = mod.summarize(exp, ["test"], ["ctc_ep4"], reach=20.0, pairs=[("gmot_ep4", "ctc_ep4")],
                       curve_epochs=[1, 4, 9])
    # the reference's table pairs only the systems trained as long (same _ep suffix)
    ref_table = md.split("### Paired by seed: system minus `ctc_ep4`")[1].split("###")[0]
    assert "| gmot_ep4 | 0 1 |" in ref_table and "| gmot |" not in ref_table
    assert "### Paired by seed: chosen pairs" in md
    assert "| gmot_ep4 | ctc_ep4 | 0 1 | -1.00 -1.50 | -1.25 ± 0.35 |" in md
    assert "| system | 1 | 4 |\n" in md  # epoch 9 was never reached: no column
    assert "| gmot_ep4 | 90.0 | 6.0 |" in md and "gmot_ep8" not in md
    png = tmp_path / "curves.png"
    mod.main(["--exp", str(exp), "--sets", "test", "--ref", "--plot", str(png),
              "--plot_systems", "ctc_ep4", "gmot_ep4", "--pair", "gmot_ep4=ctc_ep4"])
    assert png.stat().st_size > 5000
    with pytest.raises(ValueError, match="no scored runs of 'nope'"):
        mod.plot_curves(exp, ["nope"], png, ["test"])
    with pytest.raises(SystemExit):
        mod.main(["--exp", str(exp), "--pair", "gmot_ep4"])


def test_teacher_study_table_and_plot(tmp_path):
    """--teachers: the teachers' strength (weakest first) and GM-OT with each minus the
    baseline by seed; the plot of that difference against the teacher's accuracy."""
    import json

    mod = _load()
    exp, tdir = tmp_path / "exp", tmp_path / "teachers"
    for name, acc in (("strong", 0.45), ("untrained", 0.01)):
        (tdir / name).mkdir(parents=True)
        final = dict(mlm_acc=acc, mlm_ppl=20.0, unigram_acc=0.04, unigram_ppl=150.0)
        (tdir / name / "pretrain.json").write_text(json.dumps(dict(
            final=final, train_sentences=100, vocab_size=50, num_layers=2, hidden_size=128,
            epochs=3)))
    for seed, (c, u, s) in enumerate([(5.0, 4.5, 4.0), (6.0, 5.8, 5.0)]):
        _run(exp, "ctc_ep16", seed, c, [0.9, 0.1])
        _run(exp, "gmot_teacher_untrained_ep16", seed, u, [0.9, 0.1])
        _run(exp, "gmot_teacher_strong_ep16", seed, s, [0.9, 0.1])
        _run(exp, "gmot_nofused_teacher_strong_ep16", seed, s + 2.0, [0.9, 0.1])
    md = mod.main(["--exp", str(exp), "--sets", "test", "--ref", "--teachers", str(tdir),
                   "--teacher_system", "gmot_teacher_{}_ep16", "--teacher_ref", "ctc_ep16",
                   "--teacher_plot", str(tmp_path / "t.png")])
    assert md.index("| untrained | 100 | 50 | 2 x 128 | 3 | 1.0 % |") < md.index("| strong | 100 |")
    assert "| untrained | gmot_teacher_untrained_ep16 | ctc_ep16 | 0 1 | -0.50 -0.20 | -0.35 ± 0.21 |" in md
    assert "| strong | gmot_teacher_strong_ep16 | ctc_ep16 | 0 1 | -1.00 -1.00 | -1.00 ± 0.00 |" in md
    assert "| strong | gmot_nofused_teacher_strong_ep16 |" not in md  # one variant asked
    assert (tmp_path / "t.png").stat().st_size > 1000
    # a second variant (repeatable --teacher_system): its rows after the first's, in the plot
    md = mod.main(["--exp", str(exp), "--sets", "test", "--ref", "--teachers", str(tdir),
                   "--teacher_system", "gmot_teacher_{}_ep16",
                   "--teacher_system", "gmot_nofused_teacher_{}_ep16", "--teacher_ref", "ctc_ep16",
                   "--teacher_plot", str(tmp_path / "t2.png")])
    row = "| strong | gmot_nofused_teacher_strong_ep16 | ctc_ep16 | 0 1 | +1.00 +1.00 | 1.00 ± 0.00 |"
    assert md.index("| strong | gmot_teacher_strong_ep16 |") < md.index(row)
    assert "| untrained | gmot_nofused_teacher_untrained_ep16 |" not in md  # no such runs
    assert (tmp_path / "t2.png").stat().st_size > 1000
    # SYSTEM=REF: a variant with its own baseline (the converged length against its CTC)
    for seed, (c, s) in enumerate([(4.0, 3.5), (5.0, 4.0)]):
        _run(exp, "ctc_ep40", seed, c, [0.9, 0.1])
        _run(exp, "gmot_teacher_strong_ep40", seed, s, [0.9, 0.1])
    md = mod.main(["--exp", str(exp), "--sets", "test", "--ref", "--teachers", str(tdir),
                   "--teacher_system", "gmot_teacher_{}_ep16",
                   "--teacher_system", "gmot_teacher_{}_ep40=ctc_ep40", "--teacher_ref", "ctc_ep16",
                   "--teacher_plot", str(tmp_path / "t3.png")])
    assert "### GM-OT with each teacher minus its baseline, by seed" in md
    assert "| strong | gmot_teacher_strong_ep40 | ctc_ep40 | 0 1 | -0.50 -1.00 | -0.75 ± 0.35 |" in md
    assert "| strong | gmot_teacher_strong_ep16 | ctc_ep16 |" in md
    assert (tmp_path / "t3.png").stat().st_size > 1000
    for bad in ("gmot_teacher_strong_ep40", "gmot_teacher_{}_ep40="):
        with pytest.raises(SystemExit):
            mod.main(["--exp", str(exp), "--teachers", str(tdir), "--teacher_system", bad])


def test_an_archive_of_the_runs_prints_the_same_tables(tmp_path):
    """espnet_otreg.recipe.archive keeps the epoch lines and score files only; the
    summary of the unpacked archive is the summary of the runs."""
    import tarfile

    from espnet_otreg.recipe.archive import main as archive_main

    mod = _load()
    exp = tmp_path / "tts" / "exp"
    for seed, (a, b) in enumerate([(6.0, 5.0), (7.0, 5.5)]):
        _run(exp, "ctc_ep4", seed, a, [0.9, 0.3, 0.1, 0.08])
        _run(exp, "gmot_ep4", seed, b, [0.9, 0.2, 0.1, 0.06],
             logs=("train.before_resume.log", "train.log"))
    log = exp / "asr_sweep_ctc_ep4_seed0/train.log"
    log.write_text("INFO: some other line\n" + log.read_text())
    (exp / "asr_sweep_ctc_ep4_seed0/valid.cer_ctc.best.pth").write_bytes(b"x" * 1000)
    teacher = tmp_path / "tts" / "teachers" / "base" / "pretrain.json"
    teacher.parent.mkdir(parents=True)
    teacher.write_text('{"epochs": 20}')
    out = tmp_path / "runs.tar.gz"
    archive_main(["--recipe_dir", str(RECIPE), "--exp", str(exp), "--runs",
                  "asr_sweep_ctc_ep4_seed*", "asr_sweep_gmot_*", "--extra", str(teacher),
                  "--out", str(out)])
    with tarfile.open(out) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert "teachers/base/pretrain.json" in names
    assert not any(n.endswith(".pth") for n in names)
    kept = (tmp_path / "unpacked/exp/asr_sweep_ctc_ep4_seed0/train.log").read_text()
    assert "some other line" not in kept and kept.count("epoch results") == 4
    args = (["test"], ["ctc_ep4"], 20.0)
    assert mod.summarize(tmp_path / "unpacked/exp", *args) == mod.summarize(exp, *args)
    with pytest.raises(FileNotFoundError, match="no run directory .* matches 'asr_typo'"):
        archive_main(["--recipe_dir", str(RECIPE), "--exp", str(exp), "--runs", "asr_typo",
                      "--out", str(out)])
