"""ESPnetGMOTModel and GMOTAligner at tiny sizes: losses, gradients, teacher, bad input."""

import subprocess
import sys

import pytest
import torch
from gmot_fixtures import CHARS, TEACHER_DIM, batch, build_model, tiny_config

from espnet_otreg import ot
from espnet_otreg.asr.gmot import GMOTAligner, coupling_stats
from espnet_otreg.asr.teacher import pack_left
from espnet_otreg.asr.tiny import build_tiny_bert


@pytest.fixture
def model(tmp_path):
    return build_model(tiny_config(tmp_path))


def _grad_norm(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_forward_backward_every_term(model):
    loss, stats, weight = model(**batch(), utt_id=["a", "b", "c"])
    assert int(weight) == 3
    for k in ("loss_ctc", "loss_gmot", "loss_align", "loss_ctc_fused", "coupling_entropy",
              "coupling_monotonic", "ot_converged", "n_skipped_gmot"):
        assert torch.isfinite(stats[k]).all(), k
    expected = stats["loss_ctc"] + model.beta * (stats["loss_gmot"] + stats["loss_align"]) \
        + model.lambda_ * stats["loss_ctc_fused"]
    assert torch.allclose(stats["loss"], expected, rtol=1e-5)
    loss.sum().backward()
    for name in ("encoder", "adapter", "fusion", "ctc"):
        assert _grad_norm(getattr(model, name)) > 0, name
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("term", ["gmot_align", "fused"])
def test_each_term_alone_has_gradients(tmp_path, term):
    # beta only -> the adapter learns, the fusion layer does not exist;
    # lambda only -> the fusion layer learns, the adapter only through gamma* (constant).
    conf = dict(beta=1.0, lambda_=0.0) if term == "gmot_align" else dict(beta=0.0, lambda_=1.0)
    m = build_model(tiny_config(tmp_path, **conf))
    b = batch()
    base = m(**b)[1]["loss_ctc"]
    loss, stats, _ = m(**b)
    assert not torch.allclose(stats["loss"], base)
    loss.sum().backward()
    if term == "gmot_align":
        assert m.fusion is None and _grad_norm(m.adapter) > 0
    else:
        assert _grad_norm(m.fusion) > 0 and _grad_norm(m.adapter) == 0


def test_beta_lambda_zero_is_plain_ctc(tmp_path):
    m = build_model(tiny_config(tmp_path, beta=0.0, lambda_=0.0))
    loss, stats, _ = m(**batch())
    assert torch.allclose(stats["loss"], stats["loss_ctc"])


def test_own_fused_ctc_head(tmp_path):
    m = build_model(tiny_config(tmp_path, share_fused_ctc=False))
    loss, _, _ = m(**batch())
    loss.sum().backward()
    assert _grad_norm(m.ctc_fused) > 0


def test_online_teacher_frozen_and_not_saved(tmp_path):
    texts = ["".join(CHARS[i : i + 5]) for i in range(0, len(CHARS), 3)]
    build_tiny_bert(tmp_path / "bert", texts, hidden_size=TEACHER_DIM)
    m = build_model(tiny_config(tmp_path, teacher_source="online"))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    loss, stats, _ = m(**batch(teacher=False))
    assert m.teacher is not None and float(stats["loss_gmot"]) > 0
    teacher = m.teacher.model
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    loss.sum().backward()
    opt.step()
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for g in opt.param_groups for p in g["params"]}
    keys = list(m.state_dict())
    assert not any("teacher" in k or "bert" in k for k in keys)
    assert len(keys) == len(build_model(tiny_config(tmp_path)).state_dict())


def test_online_equals_cache(tmp_path):
    """The cached features (dump_teacher's path) and the online teacher agree."""
    from espnet_otreg.asr.teacher import Teacher

    build_tiny_bert(tmp_path / "bert", ["".join(CHARS)], hidden_size=TEACHER_DIM)
    b = batch(teacher=False)
    online = build_model(tiny_config(tmp_path, teacher_source="online")).eval()
    cache = build_model(tiny_config(tmp_path)).eval()
    cache.load_state_dict(online.state_dict())
    t = Teacher(str(tmp_path / "bert"))
    feats, lengths, _ = t(online.ids_to_texts(b["text"], b["text_lengths"]))
    assert lengths.tolist() == b["text_lengths"].tolist()
    s1 = online(**b)[1]
    s2 = cache(**b, teacher_feats=feats, teacher_feats_lengths=lengths)[1]
    assert torch.allclose(s1["loss"], s2["loss"], rtol=1e-5)


def test_alpha_rho_zero_is_plain_ot():
    torch.manual_seed(0)
    h, z = torch.randn(2, 12, 8), torch.randn(2, 5, 8)
    hm = torch.arange(12)[None] < torch.tensor([[12], [9]])
    zm = torch.arange(5)[None] < torch.tensor([[5], [3]])
    out = GMOTAligner(alpha=0.0, rho=0.0, epsilon=0.1, tol=1e-7, inner_max_iter=500)(h, hm, z, zm)
    ref = ot.sinkhorn(ot.cosine(h, z, hm, zm), hm, zm, epsilon=0.1, tol=1e-7, max_iter=5000)
    assert torch.allclose(out.plan, ref.plan, atol=1e-6)
    assert torch.allclose(out.fgw, ref.value_linear, atol=1e-6)


def test_monotonic_pair_gives_diagonal_coupling():
    """Frames that repeat the tokens in order: gamma* follows the diagonal band."""
    torch.manual_seed(0)
    M, N = 6, 30
    z = torch.nn.functional.normalize(torch.randn(1, M, 16), dim=-1)
    truth = torch.arange(N) * M // N  # frame i belongs to token truth[i]
    h = z[:, truth] + 0.05 * torch.randn(1, N, 16)
    hm, zm = torch.ones(1, N, dtype=torch.bool), torch.ones(1, M, dtype=torch.bool)
    out = GMOTAligner(alpha=0.02, rho=0.5, epsilon=0.05, ws=3)(h, hm, z, zm)
    assert (out.plan[0].argmax(-1) == truth).float().mean() >= 0.9
    stats = coupling_stats(out.plan, hm, out.valid)
    assert float(stats["coupling_monotonic"]) == 1.0
    assert float(out.align[0]) < 0.05 * M  # projected frames land on their tokens


def test_empty_transcript_is_skipped_and_counted(model):
    b = batch()
    b["teacher_feats_lengths"][1] = 0
    loss, stats, _ = model(**b)
    assert float(stats["n_skipped_gmot"]) == 1.0
    assert torch.isfinite(loss).all()
    loss.sum().backward()


def test_transcript_longer_than_encoder_is_counted(model):
    b = batch(seconds=(1.0, 0.8, 0.1), n_tok=(5, 4, 12))
    loss, stats, _ = model(**b)
    assert float(stats["n_text_longer_than_encoder"]) == 1.0
    assert torch.isfinite(loss).all()


def test_teacher_dim_mismatch_is_a_clear_error(model):
    b = batch()
    b["teacher_feats"] = torch.randn(3, 5, TEACHER_DIM + 1)
    with pytest.raises(ValueError, match=r"'u1'.*teacher_dim=32"):
        model(**b, utt_id=["u1", "u2", "u3"])


def test_cache_mode_needs_teacher_feats_in_training(model):
    with pytest.raises(ValueError, match="teacher_feats"):
        model(**batch(teacher=False))
    model.eval()  # validation without cached features: ASR loss only
    loss, stats, _ = model(**batch(teacher=False))
    assert "loss_gmot" not in stats and torch.allclose(stats["loss"], stats["loss_ctc"])


def test_bad_config_values(tmp_path):
    with pytest.raises(ValueError, match="teacher_source"):
        build_model(tiny_config(tmp_path, teacher_source="disk"))
    with pytest.raises(ValueError, match="alpha"):
        build_model(tiny_config(tmp_path, alpha=1.5))


def test_ids_to_texts(model):
    ids = torch.tensor([[2, 3, -1], [0, 4, 1]])
    assert model.ids_to_texts(ids, torch.tensor([2, 3])) == [CHARS[0] + CHARS[1], CHARS[2]]


def test_pack_left():
    x = torch.arange(10.0).view(2, 5, 1)
    keep = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 0, 1, 1]], dtype=torch.bool)
    out, n = pack_left(x, keep)
    assert n.tolist() == [2, 3]
    assert out[..., 0].tolist() == [[1, 2, 0], [6, 8, 9]]


def test_import_registers_with_stock_espnet():
    code = (
        "import espnet_otreg\n"
        "from espnet2.bin.asr_inference import Speech2Text\n"
        "from espnet2.tasks.asr import model_choices\n"
        "from espnet_otreg.asr.espnet_model import ESPnetGMOTModel\n"
        "assert model_choices.get_class('gmot') is ESPnetGMOTModel\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_low_precision_features_keep_float32_projections():
    """bf16 frames (``--train_dtype bfloat16`` / AMP) with float32 teacher features."""
    torch.manual_seed(0)
    h = torch.randn(2, 12, 8).to(torch.bfloat16)
    z = torch.randn(2, 5, 8)
    hm = torch.arange(12)[None] < torch.tensor([[12], [9]])
    zm = torch.arange(5)[None] < torch.tensor([[5], [3]])
    out = GMOTAligner(early_stop=False)(h, hm, z, zm)
    assert out.frames_from_tokens.dtype == torch.float32
    assert torch.isfinite(out.align).all() and torch.isfinite(out.fgw).all()
