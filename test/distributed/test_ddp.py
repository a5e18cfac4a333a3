"""DDP on CPU: ``torchrun --nproc_per_node 2`` (gloo, ``--ngpu 0``) through the training
CLIs the recipes use, GM-OT with the mini recipe config and cached teacher features, the
SLM with the mini phase-2 config. Checked for each:

- both ranks finish; what rank 0 saved (``Nepoch.pth``, ``checkpoint.pth``) is exactly
  what every rank holds at the end;
- every trainable parameter gets a gradient at every step on every rank, so DDP runs
  with ``find_unused_parameters=False`` (ESPnet's default ``--unused_parameters false``);
  for the SLM this includes a batch in which every utterance of rank 1 is skipped;
- ``--resume true`` continues the epoch count (epoch 3 after 2, nothing retrained).

Each torchrun costs ~30-60 s of CPU on two processes; four of them run here.
"""

import json

import pytest
import torch
from dist_helpers import (
    DIST, ROOT, TENSORBOARD, gmot_train_args, mini_config, torchrun, write_shapes,
)

pytestmark = pytest.mark.slow

def probe(d):
    return [json.loads((d / f"rank{r}.json").read_text()) for r in (0, 1)]


def assert_ddp_run(exp, probe_dir, stderr, last_epoch, n_steps):
    ranks = probe(probe_dir)
    assert "0/2]" in stderr, "rank 0 did not log as rank 0 of 2: not a distributed run"
    for r in ranks:
        assert r["world_size"] == 2
        assert len(r["steps"]) == n_steps, (r["rank"], len(r["steps"]))
        for i, step in enumerate(r["steps"]):
            assert step["n_params"] == len(r["trainable"])
            assert step["no_grad"] == [], \
                f"rank {r['rank']} step {i}: no gradient for {step['no_grad'][:5]}"
    # every step, both ranks report the same stat keys (else the all-gathers pair up
    # wrongly and the job hangs)
    keys = [[f["keys"] for f in r["forwards"]] for r in ranks]
    assert keys[0] == keys[1]
    saved = torch.load(exp / f"{last_epoch}epoch.pth", map_location="cpu")
    ckpt = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert ckpt["reporter"]["epoch"] == last_epoch
    for r in (0, 1):
        held = torch.load(probe_dir / f"rank{r}.pth", map_location="cpu")
        assert set(held) == set(saved) == set(ckpt["model"])
        for k in saved:
            assert torch.equal(held[k], saved[k]), \
                f"rank {r}: {k} differs from {last_epoch}epoch.pth"
            assert torch.equal(held[k], ckpt["model"][k]), k
    return ranks


def assert_resumed(exp, probe_dir, stderr, steps_per_epoch):
    assert "3epoch results" in stderr
    assert "1epoch results" not in stderr and "2epoch results" not in stderr
    assert_ddp_run(exp, probe_dir, stderr, 3, steps_per_epoch)


# ---------------------------------------------------------------------------- GM-OT
@pytest.fixture(scope="module")
def gmot_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp_gmot")
    args = gmot_train_args(tmp, max_epoch=2)
    r = torchrun(tmp / "probe1", "espnet_otreg.bin.asr_train", [*DIST, *args], cwd=tmp)
    return tmp, [*DIST, *args], r.stderr


def test_gmot_ddp_two_ranks(gmot_setup):
    tmp, _, stderr = gmot_setup
    # 8 utterances, batch 4 split over 2 ranks: 2 steps an epoch, 2 epochs
    ranks = assert_ddp_run(tmp / "exp", tmp / "probe1", stderr, 2, 4)
    assert any(n.startswith("adapter.") for n in ranks[0]["trainable"])
    assert any(n.startswith("fusion.") for n in ranks[0]["trainable"])
    # the ranks saw disjoint halves of every batch
    seen = [{u for f in r["forwards"] for u in f["utt_id"]} for r in ranks]
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 8
    assert "loss_gmot" in stderr


def test_gmot_ddp_resume(gmot_setup):
    tmp, args, _ = gmot_setup
    r = torchrun(tmp / "probe2", "espnet_otreg.bin.asr_train",
                 args + ["--resume", "true", "--max_epoch", 3], cwd=tmp)
    assert_resumed(tmp / "exp", tmp / "probe2", r.stderr, 2)


# ---------------------------------------------------------------------------- SLM
def slm_train_args(tmp, **override):
    """Tiny models, 8 utterances, the mini phase-2 config (+ ``override``); returns the
    training arguments and the utterances whose transcripts were emptied."""
    from slm_helpers import build_tiny_dirs, write_data_dir

    llm, whisper = build_tiny_dirs(tmp / "models")
    data = write_data_dir(tmp / "data", n_utts=8)
    shapes = write_shapes(data, tmp / "shapes/speech_shape")
    # batch_type unsorted (the mini config's): batches follow the shape file, 4 a
    # batch, utterances 1 and 3 of a batch go to rank 1 (ESPnet shards batch[rank::2]).
    # Empty transcripts there: in the first batch every utterance of rank 1 is skipped.
    uids = [ln.split()[0] for ln in shapes.read_text().splitlines()]
    skipped = {uids[1], uids[3]}
    text = []
    for ln in (data / "text").read_text().splitlines():
        uid = ln.split(maxsplit=1)[0]
        text.append(uid if uid in skipped else ln)
    (data / "text").write_text("\n".join(text) + "\n")
    llm_conf = dict(model_name_or_path=str(llm), **override.pop("llm_conf", {}))
    config = mini_config(
        ROOT / "egs2/fleurs_otreg/asr1/conf/mini/train_slm_otreg.yaml", tmp / "train.yaml",
        **{**dict(encoder_conf=dict(model_name_or_path=str(whisper)), llm_conf=llm_conf,
                  batch_size=4, max_epoch=2, keep_nbest_models=1,
                  use_tensorboard=TENSORBOARD), **override},
    )
    args = [*DIST, "--config", config, "--train_shape_file", shapes,
            "--valid_shape_file", shapes, "--output_dir", tmp / "exp"]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data}/text,text,text",
                 f"--{split}_data_path_and_name_and_type", f"{data}/utt2lang,lang,text"]
    return args, skipped


def assert_rank1_all_skipped(ranks, skipped, epochs):
    """Rank 1's batch with nothing to learn from ran once an epoch, while rank 0's half
    of the same batch trained normally."""
    all_skipped = [f for f in ranks[1]["forwards"]
                   if set(f["utt_id"]) == skipped and f["skipped"]["skip_empty"] == 2]
    assert len(all_skipped) == epochs, ranks[1]["forwards"]
    assert all(f["skipped"]["skip_empty"] == 0 for f in ranks[0]["forwards"])


@pytest.fixture(scope="module")
def slm_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp_slm")
    args, skipped = slm_train_args(tmp)
    r = torchrun(tmp / "probe1", "espnet_otreg.bin.slm_train", args, cwd=tmp)
    return tmp, args, r.stderr, skipped


def test_slm_ddp_two_ranks_with_an_all_skipped_rank(slm_setup):
    tmp, _, stderr, skipped = slm_setup
    ranks = assert_ddp_run(tmp / "exp", tmp / "probe1", stderr, 2, 4)
    assert_rank1_all_skipped(ranks, skipped, 2)
    trainable = ranks[0]["trainable"]
    assert any(n.startswith("llm.") for n in trainable)
    assert any(n.startswith("projector.") for n in trainable)
    assert any(n.startswith("encoder.") for n in trainable)
    assert "loss_ot" in stderr


def test_slm_ddp_frozen_llm_with_lora(tmp_path):
    """The full recipe's set-up: frozen LLM and encoder, LoRA + projector trainable."""
    pytest.importorskip("peft")
    args, skipped = slm_train_args(
        tmp_path, llm_conf=dict(freeze=True, lora=dict(r=2, lora_alpha=4)),
        model_conf=dict(phase=2, lambda_ot=0.3, ot_cost="cosine", freeze_encoder=True),
        max_epoch=1,
    )
    r = torchrun(tmp_path / "probe", "espnet_otreg.bin.slm_train", args, cwd=tmp_path)
    ranks = assert_ddp_run(tmp_path / "exp", tmp_path / "probe", r.stderr, 1, 2)
    assert_rank1_all_skipped(ranks, skipped, 1)
    trainable = ranks[0]["trainable"]
    assert all(n.startswith("projector.") or ".lora_" in n for n in trainable)
    assert any(".lora_" in n for n in trainable)


def test_slm_ddp_resume(slm_setup):
    tmp, args, _, _ = slm_setup
    r = torchrun(tmp / "probe2", "espnet_otreg.bin.slm_train",
                 args + ["--resume", "true", "--max_epoch", 3], cwd=tmp)
    assert_resumed(tmp / "exp", tmp / "probe2", r.stderr, 2)


def test_gmot_batch_without_any_coupling_keeps_every_parameter_in_the_graph(tmp_path):
    """GM-OT's counterpart of the all-skipped SLM batch, in one process: a rank whose
    batch has no teacher token (nothing to couple) still gives every trainable
    parameter (adapter, fusion, fused CTC included) a finite gradient, and the same
    stat keys, so DDP needs no find_unused_parameters."""
    from gmot_fixtures import batch, build_model, tiny_config

    model = build_model(tiny_config(tmp_path))
    full = batch()
    _, stats_full, _ = model(**full)
    empty = batch()
    empty["text"][:] = -1
    empty["text_lengths"][:] = 0
    empty["teacher_feats_lengths"][:] = 0
    loss, stats, _ = model(**empty)
    assert set(stats) == set(stats_full) and float(stats["n_skipped_gmot"]) == 3
    loss.sum().backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n
