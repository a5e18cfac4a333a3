"""CLI tests: slm_train (phase 2, LoRA), slm_inference (one job and split jobs), and the
modality gap's retrieval (its CLI runs in the FLEURS mini recipe test)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slm_helpers import build_tiny_dirs, write_data_dir

from espnet_otreg.data.datadir import merge_kv, split_scp

ROOT = Path(__file__).resolve().parents[2]


def run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def data_args(split, data, with_text=True):
    out = [f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound"]
    if with_text:
        out += [f"--{split}_data_path_and_name_and_type", f"{data}/text,text,text"]
    out += [f"--{split}_data_path_and_name_and_type", f"{data}/utt2lang,lang,text"]
    return out


@pytest.mark.slow
def test_train_lora_phase2_and_decode_in_split_jobs(tmp_path):
    """slm_train phase 2 with LoRA (no stats: an unsorted batch needs only the keys),
    then slm_inference as one job and as two --key_file jobs merged (what run.sh
    stage 12 does): the same text. Stats, phase 1 -> 2, resume and the modality gap
    run through run.sh in test/egs2/test_fleurs_mini_recipe.py."""
    llm, whisper = build_tiny_dirs(tmp_path / "models")
    data = write_data_dir(tmp_path / "data", n_utts=6)
    conf = dict(
        encoder="hf_whisper",
        encoder_conf=dict(model_name_or_path=str(whisper), pad_to_30s=False),
        llm_conf=dict(model_name_or_path=str(llm), dtype="float32"),
        projector_conf=dict(stack=4, hidden_size=32),
        model_conf=dict(phase=2, lambda_ot=0.3),
        optim="adam",
        optim_conf=dict(lr=1e-3),
        max_epoch=1,
        batch_type="unsorted",
        batch_size=3,
        num_workers=0,
        best_model_criterion=[["valid", "acc", "max"]],
        num_att_plot=0,
        # ESPnet's trainer imports tensorboard when this is on (the default)
        use_tensorboard=importlib.util.find_spec("tensorboard") is not None,
    )
    try:
        import peft  # noqa: F401

        conf["llm_conf"] = dict(conf["llm_conf"], lora=dict(r=2, lora_alpha=4))
    except ImportError:
        pass
    (tmp_path / "phase2.yaml").write_text(yaml.safe_dump(conf))
    common = data_args("train", data) + data_args("valid", data)
    keys_only = ["--train_shape_file", f"{data}/wav.scp", "--valid_shape_file", f"{data}/wav.scp"]
    proc = run(["espnet_otreg.bin.slm_train", "--config", "phase2.yaml", "--output_dir",
                "exp/p2", *keys_only, *common], tmp_path)
    summary = [ln for ln in proc.stderr.splitlines() if "1epoch results" in ln]
    assert summary and "loss_ot=" in summary[0] and "ot_entropy=" in summary[0], proc.stderr[-2000:]
    import torch

    model = tmp_path / "exp/p2/1epoch.pth"
    keys2 = torch.load(model, map_location="cpu").keys()
    assert {k.split(".")[0] for k in keys2} == {"projector"} | (
        {"llm"} if "lora" in conf["llm_conf"] else set()
    )
    assert all("lora_" in k for k in keys2 if k.startswith("llm."))

    # decoding, one job and two --key_file jobs merged (what run.sh stage 12 does)
    infer = ["espnet_otreg.bin.slm_inference", "--slm_train_config", "exp/p2/config.yaml",
             "--slm_model_file", str(model), "--batch_size", "4",
             "--data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
             "--data_path_and_name_and_type", f"{data}/utt2lang,lang,text",
             "--max_new_tokens", "5"]
    run(infer + ["--output_dir", "dec1"], tmp_path)
    keys = [tmp_path / f"keys.{j}.scp" for j in (1, 2)]
    split_scp(data / "wav.scp", keys)
    for j, kf in enumerate(keys, 1):
        run(infer + ["--key_file", str(kf), "--output_dir", f"dec2/output.{j}"], tmp_path)
    merge_kv(tmp_path / "dec2/text", [tmp_path / f"dec2/output.{j}/text" for j in (1, 2)])
    lines1 = (tmp_path / "dec1/text").read_text().splitlines()
    assert [ln.split()[0] for ln in lines1] == sorted(
        ln.split()[0] for ln in (data / "wav.scp").read_text().splitlines()
    )
    assert lines1 == (tmp_path / "dec2/text").read_text().splitlines()
    # (hypotheses may be empty here: one epoch on 6 noise clips; test_slm_model checks text)


def test_retrieval_chunked_equals_full_matrix():
    import torch

    from espnet_otreg.bin.modality_gap import retrieval

    s = torch.randn(300, 8)
    t = s + torch.randn(300, 8)
    block, r1, r5 = retrieval([s[:100], s[100:]], [t[:100], t[100:]], chunk=64, n_plot=10)
    sim = torch.nn.functional.normalize(s, dim=-1) @ torch.nn.functional.normalize(t, dim=-1).T
    rank = (sim > sim.diagonal()[:, None]).sum(1)
    assert abs(r1 - float((rank < 1).float().mean())) < 1e-6
    assert abs(r5 - float((rank < 5).float().mean())) < 1e-6
    assert 0 < r1 < r5 < 1 and block.shape == (10, 10)


def test_slm_inference_reads_a_decoding_config(tmp_path):
    """--config decode.yaml as in espnet2.bin.asr_inference: keys are option names,
    null is None (it used to become '--max_new_tokens None' and fail), the command line
    wins, and a wrong key is an error naming it."""
    from espnet_otreg.bin.slm_inference import get_parser

    conf = tmp_path / "decode.yaml"
    conf.write_text("beam_size: 3\nmax_new_tokens: null\n")
    base = ["--slm_train_config", "c.yaml", "--output_dir", "out",
            "--data_path_and_name_and_type", "wav.scp,speech,sound", "--config", str(conf)]
    a = get_parser().parse_args(base)
    assert (a.beam_size, a.max_new_tokens) == (3, None)
    assert get_parser().parse_args(base + ["--beam_size", "1"]).beam_size == 1
    conf.write_text("beam: 3\n")
    with pytest.raises(SystemExit):
        get_parser().parse_args(base)


def test_mean_norm_over_the_valid_rows_only():
    """The modality gap's embedding norms average the rows within each length; the
    padding (here huge) never enters."""
    import torch

    from espnet_otreg.bin.modality_gap import mean_norm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g)
    lengths = torch.tensor([5, 2, 1])
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 1e6
    want = torch.stack([x[b, :n].norm(dim=-1).mean() for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(mean_norm(x, lengths), want)


def test_modality_gap_measures_every_model_with_the_given_ot_setting():
    """--ot_cost etc. replace the model's own OT options (a base model trained with
    other options is measured alike); without them the model's options stay."""
    from types import SimpleNamespace

    from espnet_otreg.bin.modality_gap import get_parser, set_ot_options

    model = SimpleNamespace(ot_conf=dict(cost="cosine", epsilon=0.5, loss_scale="normalized",
                                         tau=None), ot_blank=False, ot_dedup=True)
    base = ["--slm_train_config", "c", "--data_dir", "d", "--output_dir", "o"]
    kept = set_ot_options(model, get_parser().parse_args(base))
    assert kept == dict(cost="cosine", epsilon=0.5, loss_scale="normalized", tau=None,
                        blank=False, dedup=True)
    args = get_parser().parse_args(base + ["--ot_cost", "sqeuclidean", "--ot_epsilon", "0.1",
                                           "--ot_loss_scale", "raw", "--ot_blank", "true"])
    used = set_ot_options(model, args)
    assert used["cost"] == model.ot_conf["cost"] == "sqeuclidean"
    assert (used["epsilon"], used["loss_scale"], model.ot_blank, model.ot_dedup) == (0.1, "raw", True, True)
    with pytest.raises(SystemExit):
        get_parser().parse_args(base + ["--ot_blank", "maybe"])
