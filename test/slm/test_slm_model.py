"""ESPnetSLMModel at tiny sizes: losses, phases, checkpoints, decoding, bad input."""

import copy

import numpy as np
import pytest
import torch

from slm_helpers import build_tiny_dirs, make_batch, task_args, trainable

from espnet_otreg.slm.sequence import SKIP_REASONS
from espnet_otreg.tasks.slm import SLMTask


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return build_tiny_dirs(tmp_path_factory.mktemp("slm_models"))


@pytest.fixture(scope="module")
def short_ctx_dirs(tmp_path_factory):
    return build_tiny_dirs(tmp_path_factory.mktemp("slm_short"), max_position_embeddings=40)


def build(dirs, **model_conf):
    args = task_args(*dirs, **model_conf)
    return SLMTask.build_model(args), SLMTask.build_preprocess_fn(args, True), args


ITEMS = [
    ("utt_a", 16000, "hello world", "en_us"),
    ("utt_b", 9000, "the cat sat on the mat", "fr_fr"),
    ("utt_c", 12000, "a dog ran in the park", "en_us"),
]


@pytest.mark.parametrize("lambda_ot", [0.0, 0.3])
def test_forward_backward(dirs, lambda_ot):
    model, pre, _ = build(dirs, phase=2, lambda_ot=lambda_ot)
    uids, batch = make_batch(pre, ITEMS)
    loss, stats, weight = model(**batch, utt_id=uids)
    assert torch.isfinite(loss).all() and float(weight) == 3
    for key in ("loss_ce", "acc", "loss_ot", "ot_entropy", "ot_cos", "skip_empty"):
        assert key in stats, key
    expected = stats["loss_ce"] + lambda_ot * stats["loss_ot"]
    assert torch.allclose(loss, expected, atol=1e-5)
    assert float(stats["loss_ot"]) > 0 and float(stats["ot_converged"]) == 1.0
    assert torch.allclose(stats["ot_ce_ratio"], stats["loss_ot"] / stats["loss_ce"])
    loss.sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads) == {n for n in grads if n.startswith("projector.")}
    for g in grads.values():
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_ot_gradient_is_added(dirs):
    """The OT term changes the projector gradient by lambda * dL_OT (envelope)."""
    torch.manual_seed(0)
    base, pre, _ = build(dirs, phase=2, lambda_ot=0.0)
    torch.manual_seed(0)
    otreg, _, _ = build(dirs, phase=2, lambda_ot=0.3)
    uids, batch = make_batch(pre, ITEMS)
    for m in (base, otreg):
        m(**batch, utt_id=uids)[0].sum().backward()
    g0 = base.projector.mlp[3].weight.grad
    g1 = otreg.projector.mlp[3].weight.grad
    assert not torch.allclose(g0, g1)


def test_phase1_trains_projector_only_llm_unchanged(dirs):
    model, pre, _ = build(dirs, phase=1, lambda_ot=0.3, ctc_weight=0.5)
    assert model.lambda_ot == 0.0 and model.ctc_weight == 0.0
    projector = model.projector.named_parameters(prefix="projector")
    assert trainable(model) == sorted(n for n, _ in projector)
    llm_before = copy.deepcopy(model.llm.state_dict())
    enc_before = copy.deepcopy(model.encoder.state_dict())
    proj_before = copy.deepcopy(model.projector.state_dict())
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    uids, batch = make_batch(pre, ITEMS)
    model.train()
    loss, stats, _ = model(**batch, utt_id=uids)
    assert torch.allclose(loss, stats["loss_ce"])
    loss.sum().backward()
    opt.step()
    for k, v in model.llm.state_dict().items():
        assert torch.equal(v, llm_before[k]), k
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, enc_before[k]), k
    assert any(not torch.equal(v, proj_before[k]) for k, v in model.projector.state_dict().items())
    for n, p in model.named_parameters():
        assert n.startswith("projector.") or p.grad is None, n


def test_phase2_lora_and_encoder_trainable(dirs):
    pytest.importorskip("peft")
    args = task_args(*dirs, phase=2, lambda_ot=0.3, freeze_encoder=False)
    args.llm_conf["lora"] = dict(r=2, lora_alpha=4)
    model = SLMTask.build_model(args)
    names = trainable(model)
    assert any("lora_" in n for n in names)
    assert any(n.startswith("encoder.model.") for n in names)
    assert all(
        "lora_" in n for n in names if n.startswith("llm.")
    ), "only LoRA adapters of the LLM are trainable"
    pre = SLMTask.build_preprocess_fn(args, True)
    uids, batch = make_batch(pre, ITEMS)
    model(**batch, utt_id=uids)[0].sum().backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    # checkpoints: adapters and the trained encoder are saved, frozen LLM weights are not
    sd = model.state_dict()
    assert any("lora_" in k for k in sd) and any(k.startswith("encoder.model.") for k in sd)
    assert not any(k.startswith("llm.") and "lora_" not in k for k in sd)


def test_checkpoint_without_frozen_weights_loads(dirs):
    model, pre, args = build(dirs, phase=1)
    sd = model.state_dict()
    assert sd and all(k.startswith("projector.") for k in sd), sorted(sd)[:4]
    with torch.no_grad():
        model.projector.mlp[0].weight.add_(1.0)
    fresh = SLMTask.build_model(args)
    fresh.load_state_dict(sd, strict=True)  # frozen pretrained keys may be absent
    assert torch.equal(fresh.projector.mlp[0].weight, sd["projector.mlp.0.weight"])
    with pytest.raises(RuntimeError, match="projector"):
        fresh.load_state_dict({}, strict=True)  # trainable keys may not
    full = dict(model.state_dict())
    model.save_frozen_pretrained = True
    assert any(k.startswith("llm.") for k in model.state_dict())
    model.save_frozen_pretrained = False
    assert full.keys() == sd.keys()


def test_ot_loss_decreases_when_projector_trained_on_it(dirs):
    for cost, grad in (("sqeuclidean", "envelope"), ("cosine", "envelope"), ("cosine", "autodiff")):
        torch.manual_seed(0)
        model, pre, _ = build(dirs, phase=2, lambda_ot=1.0, ot_cost=cost, ot_grad=grad)
        uids, batch = make_batch(pre, ITEMS)
        opt = torch.optim.Adam(model.projector.parameters(), lr=3e-3)
        values = []
        for _ in range(15):
            z, z_lens = model.encode(batch["speech"], batch["speech_lengths"])
            loss_ot, _ = model.ot_loss(z, z_lens, batch["text"], batch["text_lengths"])
            values.append(float(loss_ot.detach()))
            opt.zero_grad()
            loss_ot.backward()
            opt.step()
        assert values[-1] < 0.7 * values[0], (cost, grad, values)


def test_ctc_baseline(dirs):
    model, pre, _ = build(dirs, phase=2, lambda_ot=0.0, ctc_weight=0.3)
    uids, batch = make_batch(pre, ITEMS)
    loss, stats, _ = model(**batch, utt_id=uids)
    assert torch.isfinite(stats["loss_ctc"]) and float(stats["loss_ctc"]) > 0
    assert torch.allclose(loss, stats["loss_ce"] + 0.3 * stats["loss_ctc"], atol=1e-5)
    loss.sum().backward()
    assert model.projector.mlp[0].weight.grad is not None


def test_decode_batch_of_different_lengths(dirs):
    model, _, args = build(dirs, phase=2)
    model.eval()
    pre = SLMTask.build_preprocess_fn(args, False)
    items = [("a", 16000, None, "en_us"), ("b", 5000, None, "fr_fr"), ("c", 24000, None, "en_us")]
    uids, batch = make_batch(pre, items, with_text=False)
    # a chat model's sampling / repetition defaults must not leak into decoding
    model.llm.generation_config.do_sample = True
    model.llm.generation_config.temperature = 0.7
    model.llm.generation_config.repetition_penalty = 5.0
    hyps, reasons = model.generate(**batch, utt_id=uids, max_new_tokens=6)
    assert model.generate(**batch, max_new_tokens=6)[0] == hyps  # deterministic
    assert reasons == [None, None, None]
    assert all(1 <= len(h) <= 6 for h in hyps)
    text = [pre.tokenizer.decode(h, skip_special_tokens=True) for h in hyps]
    assert all(isinstance(t, str) and len(t) > 0 for t in text), text
    # the left-padded batch decodes each utterance as it decodes alone
    for i in range(3):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        one["speech"] = one["speech"][:, : int(one["speech_lengths"][0])]
        for key in ("prompt_pre", "prompt_post"):
            one[key] = one[key][:, : int(one[key + "_lengths"][0])]
        h1, _ = model.generate(**one, max_new_tokens=6)
        assert h1[0] == hyps[i]
    beam, _ = model.generate(**batch, beam_size=3, max_new_tokens=6)
    assert len(beam) == 3 and all(len(h) >= 1 for h in beam)


def test_bad_input_is_skipped_and_counted(dirs, caplog):
    model, pre, _ = build(dirs, phase=2, lambda_ot=0.3)
    items = [
        ("good", 16000, "hello world", "en_us"),
        ("empty", 16000, "   ", "en_us"),
        ("short", 800, "hello", "en_us"),  # 5 mel frames -> 3 encoder frames < stack 4
    ]
    uids, batch = make_batch(pre, items)
    with caplog.at_level("WARNING"):
        loss, stats, weight = model(**batch, utt_id=uids)
    assert float(stats["skip_empty"]) == 1 and float(stats["skip_short"]) == 1
    assert float(weight) == 1 and torch.isfinite(loss).all()
    assert "utterance empty: skipped (empty transcript)" in caplog.text
    assert "utterance short: skipped (audio shorter than one projector step)" in caplog.text
    # a batch with nothing usable: zero loss, same stat keys, no crash
    uids, batch = make_batch(pre, items[1:])
    loss, stats2, _ = model(**batch, utt_id=uids)
    assert float(loss.detach()) == 0.0 and set(stats2) == set(stats)
    model.zero_grad(set_to_none=True)
    loss.sum().backward()
    # DDP expects a gradient for every trainable parameter at every step.
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    hyps, reasons = model.generate(
        **{k: v for k, v in batch.items() if not k.startswith("text")}, max_new_tokens=3
    )
    assert reasons[1] == "audio shorter than one projector step" and hyps[1] == []


def test_prompt_too_long_for_context(short_ctx_dirs, caplog):
    model, pre, _ = build(short_ctx_dirs, phase=2)
    assert model.max_context == 40
    items = [("fits", 8000, "hello", "en_us"), ("long", 48000, "the cat sat on the mat", "en_us")]
    uids, batch = make_batch(pre, items)
    with caplog.at_level("WARNING"):
        loss, stats, weight = model(**batch, utt_id=uids)
    assert float(stats["skip_long"]) == 1 and float(weight) == 1
    assert "utterance long: skipped" in caplog.text and "> LLM context 40" in caplog.text
    model.eval()
    hyps, reasons = model.generate(
        **{k: v for k, v in batch.items() if not k.startswith("text")}, max_new_tokens=50
    )
    assert reasons[0] is None and reasons[1] == SKIP_REASONS["skip_long"]
    n_speech = 8000 // 160 // 2 // 4  # mel frames -> encoder frames -> stack 4
    n_prompt = int(batch["prompt_pre_lengths"][0] + batch["prompt_post_lengths"][0]) + n_speech
    assert len(hyps[0]) <= 40 - n_prompt


def test_whisper_log_mel_matches_feature_extractor(dirs):
    from transformers import WhisperFeatureExtractor

    model, _, _ = build(dirs)
    fe = WhisperFeatureExtractor.from_pretrained(dirs[1])
    wav = (0.1 * np.random.RandomState(0).randn(20000)).astype(np.float32)
    ref = fe(wav, sampling_rate=16000, return_tensors="pt").input_features[0]
    x = torch.nn.functional.pad(torch.from_numpy(wav), (0, 480000 - 20000))[None]
    mel, n = model.encoder.log_mel(x, torch.tensor([20000]))
    assert mel.shape[-1] == 3000 and int(n) == 125
    assert torch.allclose(mel[0], ref, atol=1e-4)
    # pad_to_30s (the full Whisper window) and the short path agree on shapes
    enc = model.encoder
    out_short, len_short, _ = enc(x[:, :20000], torch.tensor([20000]))
    enc.pad_to_30s = True
    out_full, len_full, _ = enc(x[:, :20000], torch.tensor([20000]))
    enc.pad_to_30s = False
    assert int(len_short) == int(len_full) == 63
    assert out_short.shape == out_full.shape == (1, 63, enc.output_size())


def test_preprocessor_prompt_and_language(dirs):
    _, pre, _ = build(dirs)
    tok = pre.tokenizer
    out = pre("u1", {"speech": np.zeros(100, np.float32), "text": " hello world ", "lang": "fr_fr"})
    assert tok.decode(out["prompt_pre"]) == "Transcribe the following French speech.\n"
    assert tok.decode(out["prompt_post"]) == "\nTranscript:\n"
    assert tok.decode(out["text"]) == "hello world"
    out = pre("u2", {"speech": np.zeros(100, np.float32), "text": "hello"})
    assert "English" in tok.decode(out["prompt_pre"])  # default_lang en_us
    from espnet_otreg.slm.prompt import PromptTemplate, language_name

    assert language_name("cmn_hans_cn") == "Mandarin Chinese" and language_name("de") == "German"
    assert language_name("xx_yy") is None
    with pytest.raises(ValueError, match="speech"):
        PromptTemplate("no placeholder")


def test_gradient_checkpointing_same_loss(dirs):
    torch.manual_seed(0)
    model, pre, _ = build(dirs, phase=2, lambda_ot=0.3)
    args = task_args(*dirs, phase=2, lambda_ot=0.3)
    args.llm_conf["gradient_checkpointing"] = True
    torch.manual_seed(0)
    ckpt = SLMTask.build_model(args)
    ckpt.train(), model.train()
    uids, batch = make_batch(pre, ITEMS)
    l0 = model(**batch, utt_id=uids)[0]
    l1 = ckpt(**batch, utt_id=uids)[0]
    assert torch.allclose(l0, l1, atol=1e-5)
    l1.sum().backward()
    assert ckpt.projector.mlp[0].weight.grad is not None


def test_template_with_speech_last(dirs):
    args = task_args(*dirs, phase=2)
    args.prompt_conf = dict(prompt_template="Transcribe {lang}: {speech}")
    model = SLMTask.build_model(args)
    pre = SLMTask.build_preprocess_fn(args, True)
    uids, batch = make_batch(pre, ITEMS)
    assert batch["prompt_post"].shape[1] == 0
    loss, _, _ = model(**batch, utt_id=uids)
    assert torch.isfinite(loss).all()
    model.eval()
    hyps, _ = model.generate(
        **{k: v for k, v in batch.items() if not k.startswith("text")}, max_new_tokens=2
    )
    assert all(len(h) >= 1 for h in hyps)


def test_padding_does_not_change_the_loss(dirs):
    """CE of a padded batch = token-weighted mean of the utterances' CE alone."""
    model, pre, _ = build(dirs, phase=2, lambda_ot=0.0)
    model.eval()
    uids, batch = make_batch(pre, ITEMS)
    both = model(**batch, utt_id=uids)[1]["loss_ce"]
    total, n_tok = 0.0, 0
    for i in range(len(ITEMS)):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        for key in ("speech", "text", "prompt_pre", "prompt_post"):
            one[key] = one[key][:, : int(one[key + "_lengths"][0])]
        n = int(one["text_lengths"][0]) + 1
        total += float(model(**one)[1]["loss_ce"]) * n
        n_tok += n
    assert abs(float(both) - total / n_tok) < 1e-4


def test_espnet_frontend_and_encoder(dirs):
    """An ESPnet fbank frontend + Transformer encoder instead of Whisper (phase 2, trained)."""
    args = task_args(*dirs, phase=2, lambda_ot=0.3, freeze_encoder=False)
    args.frontend = "default"
    args.frontend_conf = dict(n_fft=400, hop_length=160, n_mels=20)
    args.normalize = "utterance_mvn"
    args.normalize_conf = {}
    args.encoder = "transformer"
    args.encoder_conf = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=1,
                             input_layer="conv2d")
    model = SLMTask.build_model(args)
    pre = SLMTask.build_preprocess_fn(args, True)
    uids, batch = make_batch(pre, ITEMS)
    loss, stats, _ = model(**batch, utt_id=uids)
    loss.sum().backward()
    assert model.encoder.encoders[0].self_attn.linear_q.weight.grad is not None
    sd = model.state_dict()
    assert any(k.startswith("encoder.") for k in sd) and not any(k.startswith("llm.") for k in sd)
    feats = model.collect_feats(batch["speech"], batch["speech_lengths"])
    assert feats["feats"].shape[-1] == 20


def test_collect_stats_builds_no_llm(dirs):
    from espnet_otreg.slm.stats_model import SLMStatsModel

    args = task_args(*dirs, phase=1)
    args.collect_stats = True
    model = SLMTask.build_model(args)
    assert isinstance(model, SLMStatsModel) and sum(p.numel() for p in model.parameters()) == 1
    speech, lens = torch.randn(2, 800), torch.tensor([800, 500])
    out = model.collect_feats(speech, lens)
    assert out["feats"] is speech and out["feats_lengths"] is lens


def test_full_llm_finetuning_in_phase2_only(dirs):
    """llm_conf.freeze false (e.g. a random mini LLM): trained and saved in phase 2 only."""
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    args1 = task_args(*dirs, phase=1)
    args1.llm_conf["freeze"] = False
    p1 = SLMTask.build_model(args1)
    assert all(n.startswith("projector.") for n in trainable(p1))
    args2 = task_args(*dirs, phase=2)
    args2.llm_conf["freeze"] = False
    p2 = SLMTask.build_model(args2)
    assert any(n.startswith("llm.") for n in trainable(p2))
    assert any(k.startswith("llm.") for k in p2.state_dict())
    # phase 2 initialised from a phase-1 file that has the projector only (--init_param)
    with torch.no_grad():
        p1.projector.mlp[0].weight.fill_(0.5)
    import tempfile, os

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p1.pth")
        torch.save(p1.state_dict(), path)
        load_pretrained_model(path, p2, ignore_init_mismatch=False, map_location="cpu")
    assert torch.all(p2.projector.mlp[0].weight == 0.5)


def test_bf16_llm_survives_trainer_cast(dirs):
    """ESPnet's trainer does model.to(dtype=float32): the bf16 LLM must stay bf16."""
    args = task_args(*dirs, phase=2, lambda_ot=0.3)
    args.llm_conf["dtype"] = "bfloat16"
    args.encoder_conf["dtype"] = "bfloat16"
    model = SLMTask.build_model(args)
    model = model.to(dtype=torch.float32, device="cpu")
    assert model.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert model.encoder.model.conv1.weight.dtype == torch.bfloat16
    assert model.projector.mlp[0].weight.dtype == torch.float32
    model.to(torch.float64)
    assert model.projector.mlp[0].weight.dtype == torch.float64
    model.to(torch.float32)
    pre = SLMTask.build_preprocess_fn(args, True)
    uids, batch = make_batch(pre, ITEMS)
    loss, stats, _ = model(**batch, utt_id=uids)
    assert torch.isfinite(loss).all() and torch.isfinite(stats["loss_ot"])
    loss.sum().backward()
    assert model.projector.mlp[0].weight.grad.dtype == torch.float32


@pytest.mark.parametrize("conf", [dict(lambda_ot=0.0), dict(lambda_ot=0.3),
                                  dict(lambda_ot=0.3, ctc_weight=0.2)])
def test_empty_batch_writes_the_declared_stats_of_every_loss(dirs, conf):
    """The keys a normal step writes are the losses' declared ones (loss_stat_keys) and
    the batch checks'; an empty step writes exactly the same (DDP would hang else)."""
    model, pre, _ = build(dirs, phase=2, **conf)
    uids, batch = make_batch(pre, ITEMS[:1] + [("empty", 16000, "   ", "en_us")])
    _, stats, _ = model(**batch, utt_id=uids)
    declared = set(model.loss_stat_keys())
    assert declared <= set(stats) and set(stats) - declared <= {"loss", *SKIP_REASONS}
    uids, batch = make_batch(pre, [("empty", 16000, "   ", "en_us")])
    _, empty, _ = model(**batch, utt_id=uids)
    assert set(empty) == set(stats)
    assert all(torch.isnan(empty[k]) for k in declared)


def test_to_target_reads_every_form_of_module_to():
    """The frozen-weights dtype policy parses Module.to's arguments on public API."""
    from espnet_otreg.slm.frozen import to_target

    t = torch.zeros(1, dtype=torch.float16)
    assert to_target(torch.bfloat16) == (None, torch.bfloat16, False)
    assert to_target("cpu", torch.float32, True) == (torch.device("cpu"), torch.float32, True)
    assert to_target(dtype=torch.float32, device="cpu") == (torch.device("cpu"), torch.float32, False)
    assert to_target(t) == (torch.device("cpu"), torch.float16, False)
    assert to_target(tensor=t, non_blocking=True) == (torch.device("cpu"), torch.float16, True)
    assert to_target("cpu") == (torch.device("cpu"), None, False)
