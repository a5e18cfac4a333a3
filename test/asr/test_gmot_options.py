"""GM-OT's optional choices (issue: evidence that the methods work, part 1): the fused
branch's source, the prior's placement, relative epsilon and its schedule, a window per
graph, one-sided unbalanced OT. Defaults keep today's behaviour; each option is checked against what it claims."""

import pytest
import torch
from gmot_fixtures import batch, build_model, tiny_config

from espnet_otreg import ot
from espnet_otreg.asr.gmot import GMOTAligner


def _pairs(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, 16, 8, generator=g, dtype=dtype)
    z = torch.randn(3, 6, 8, generator=g, dtype=dtype)
    hm = torch.arange(16)[None] < torch.tensor([16, 11, 7])[:, None]
    zm = torch.arange(6)[None] < torch.tensor([6, 4, 3])[:, None]
    return h, hm, z, zm


EXACT = dict(tol=1e-10, inner_max_iter=1000, max_iter=30)


def test_prior_outside_keeps_its_weight_when_alpha_changes():
    h, hm, z, zm = _pairs()
    out = GMOTAligner(alpha=0.5, rho=0.4, prior="outside", ws=None, **EXACT)(h, hm, z, zm)
    # (1 - alpha) <D + rho/(1 - alpha) T, P> = (1 - alpha) <D, P> + rho <T, P>
    same = GMOTAligner(alpha=0.5, rho=0.8, prior="inside", ws=None, **EXACT)(h, hm, z, zm)
    torch.testing.assert_close(out.plan, same.plan, atol=1e-8, rtol=0)
    a0 = [GMOTAligner(alpha=0.0, rho=0.4, prior=p, ws=None, **EXACT)(h, hm, z, zm).plan
          for p in ("inside", "outside")]
    torch.testing.assert_close(a0[0], a0[1], atol=0, rtol=0)
    with pytest.raises(ValueError, match="prior"):
        GMOTAligner(prior="between")
    with pytest.raises(ValueError, match="alpha < 1"):
        GMOTAligner(alpha=1.0, rho=0.5, prior="outside")


@pytest.mark.parametrize("ws", [None, 2])
def test_relative_epsilon_is_epsilon_times_each_pairs_largest_cost(ws):
    h, hm, z, zm = _pairs()
    rel = GMOTAligner(alpha=0.3, rho=0.5, epsilon=0.2, ws=ws, epsilon_mode="relative",
                      **EXACT)(h, hm, z, zm)
    node = ot.cosine(h, z, hm, zm)
    cmax = (node + 0.5 * ot.temporal_prior(hm, zm)).amax((1, 2))
    for b in range(3):  # the pair alone, absolute epsilon = 0.2 * its largest cost
        one = GMOTAligner(alpha=0.3, rho=0.5, epsilon=0.2 * float(cmax[b]), ws=ws, **EXACT)
        ref = one(h[b : b + 1], hm[b : b + 1], z[b : b + 1], zm[b : b + 1])
        torch.testing.assert_close(rel.plan[b : b + 1], ref.plan, atol=1e-7, rtol=0)
        torch.testing.assert_close(rel.fgw[b : b + 1], ref.fgw, atol=1e-7, rtol=1e-6)


def test_a_window_per_graph_uses_each_graphs_own_band():
    h, hm, z, zm = _pairs()
    al = GMOTAligner(alpha=0.5, rho=0.5, ws=4, ws_tokens=1, **EXACT)
    out = al(h, hm, z, zm)
    cost = ot.cosine(h, z, hm, zm) + 0.5 * ot.temporal_prior(hm, zm)
    ref = ot.fused_gromov_wasserstein(
        cost, ot.structure(h, hm, window=4), ot.structure(z, zm, window=1), hm, zm,
        alpha=0.5, epsilon=al.epsilon, **EXACT)
    torch.testing.assert_close(out.plan, ref.plan, atol=1e-6, rtol=0)
    assert (al.ws_frames, al.ws_tokens) == (4, 1)
    with pytest.raises(ValueError, match="set ws too"):
        GMOTAligner(ws=None, ws_frames=3)


def test_one_sided_unbalanced_matches_every_token_and_relaxes_the_frames(tmp_path):
    """tau_frames alone (arXiv 2509.05609's one-sided reading): the token marginal is
    hard (b = 1/M), the frame marginal is not; tau_tokens alone the other way round;
    the model passes them through and trains."""
    h, hm, z, zm = _pairs(seed=2)
    frames = GMOTAligner(alpha=0.3, rho=0.5, ws=3, tau_frames=0.05, **EXACT)
    out = frames(h, hm, z, zm)
    b = zm.double() / zm.sum(-1, keepdim=True)
    a = hm.double() / hm.sum(-1, keepdim=True)
    torch.testing.assert_close(out.plan.sum(-2), b, atol=1e-8, rtol=0)
    assert float((out.plan.sum(-1) - a).abs().sum()) > 1e-3
    cost = ot.cosine(h, z, hm, zm) + 0.5 * ot.temporal_prior(hm, zm)
    ref = ot.fused_gromov_wasserstein(
        cost, ot.structure(h, hm, window=3, banded=True),
        ot.structure(z, zm, window=3, banded=True), hm, zm, alpha=0.3,
        epsilon=frames.epsilon, tau=(0.05, None), ws=3, **EXACT)
    torch.testing.assert_close(out.plan, ref.plan, atol=1e-8, rtol=0)
    tokens = GMOTAligner(alpha=0.3, rho=0.5, ws=3, tau_tokens=0.05, **EXACT)(h, hm, z, zm)
    torch.testing.assert_close(tokens.plan.sum(-1), a, atol=1e-8, rtol=0)
    both = GMOTAligner(alpha=0.3, rho=0.5, ws=3, tau=0.05, tau_tokens=0.5, **EXACT)
    assert (both.tau_frames, both.tau_tokens) == (0.05, 0.5)
    with pytest.raises(ValueError, match="tau"):
        GMOTAligner(tau_frames=-1.0)
    m = build_model(tiny_config(tmp_path, tau_frames=0.5))
    assert (m.gmot.tau_frames, m.gmot.tau_tokens) == (0.5, None)
    loss, stats, _ = m(**batch())
    loss.sum().backward()
    assert torch.isfinite(loss).all()


@pytest.mark.parametrize("source", ["acoustic", "none"])
def test_fusion_source_carries_no_teacher_feature(tmp_path, source):
    m = build_model(tiny_config(tmp_path, fusion_source=source))
    assert (source == "none") == (not hasattr(m.fusion, "proj"))
    b = batch()
    loss, stats, _ = m(**b)
    loss.sum().backward()
    # every parameter trained (DDP finds none unused), the fused CTC computed
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    assert torch.isfinite(stats["loss_ctc_fused"])
    # the fused loss does not move with the teacher features once gamma* is fixed
    if source == "none":
        b2 = dict(b, teacher_feats=b["teacher_feats"] * 3.0)
        torch.testing.assert_close(m(**b2)[1]["loss_ctc_fused"], stats["loss_ctc_fused"])
    with pytest.raises(ValueError, match="fusion_source"):
        build_model(tiny_config(tmp_path, fusion_source="text"))


def test_epsilon_schedule_is_geometric_counted_and_checkpointed(tmp_path):
    sched = dict(start=1.0, end=0.01, steps=4)
    m = build_model(tiny_config(tmp_path, epsilon_schedule=sched)).train()
    b = batch()
    seen = [float(m(**b)[1]["ot_epsilon"]) for _ in range(6)]
    want = [1.0 * (0.01 / 1.0) ** min(t / 4, 1.0) for t in range(6)]
    assert seen == pytest.approx(want, rel=1e-6)
    assert int(m.gmot.step) == 6
    m.eval()
    m(**b)  # evaluation does not count
    again = build_model(tiny_config(tmp_path, epsilon_schedule=sched))
    again.load_state_dict(m.state_dict())  # a resumed run continues the count
    assert again.gmot.scheduled_epsilon() == pytest.approx(0.01)
    plain = build_model(tiny_config(tmp_path))
    assert "gmot.step" not in plain.state_dict() and "ot_epsilon" not in plain(**b)[1]
    with pytest.raises(ValueError, match="epsilon_schedule"):
        build_model(tiny_config(tmp_path, epsilon_schedule=dict(start=1.0)))


def test_gmot_config_is_validated_once_and_names_the_wrong_key():
    from espnet_otreg.asr.gmot import GMOTConfig

    with pytest.raises(ValueError, match=r"unknown GM-OT option\(s\) \['wss'\]"):
        GMOTConfig.from_options(wss=3)
    with pytest.raises(ValueError, match="ws_frames .*whole number.*3.0"):
        GMOTConfig.from_options(ws=3.0)
    with pytest.raises(ValueError, match="epsilon_mode must be one of"):
        GMOTConfig.from_options(epsilon_mode="sharp")
    c = GMOTConfig.from_options(ws=5, ws_tokens=2, tau_frames=1.0)
    assert (c.ws, c.tau) == ((5, 2), (1.0, None))
    assert GMOTConfig.from_options(**c.options()) == c  # the flat form round-trips
    with pytest.raises(Exception):
        c.alpha = 0.5  # frozen


def test_aligner_replace_cannot_silently_ignore_an_override():
    """coupling_diagnostics used to setattr 'ws' while forward read ws_frames/ws_tokens:
    --setting x:ws=3 changed nothing. replace() returns a copy that really has it."""
    from espnet_otreg.asr.gmot import GMOTAligner

    al = GMOTAligner(ws=5, ws_tokens=2, epsilon_schedule=dict(start=1.0, end=0.1, steps=4))
    al.step += 2
    new = al.replace(ws=3)
    assert (new.ws_frames, new.ws_tokens) == (3, 3) and (al.ws_frames, al.ws_tokens) == (5, 2)
    assert int(new.step) == 2  # the schedule's count goes on
    assert al.replace(epsilon=0.02).scheduled_epsilon() == 0.02  # not the schedule's
    assert al.replace(tau=0.5).config.tau == (0.5, 0.5)
    with pytest.raises(ValueError, match="unknown GM-OT option"):
        al.replace(epsilon_sched=None)


def test_every_model_conf_key_of_the_coupling_reaches_the_config():
    """ESPnetGMOTModel's signature (what ESPnet prints and type-checks) and the config's
    options are one list: nothing is dropped on the way, nothing is missing."""
    import inspect

    from espnet_otreg.asr.espnet_model import ESPnetGMOTModel
    from espnet_otreg.asr.gmot import GMOTConfig

    params = set(inspect.signature(ESPnetGMOTModel.__init__).parameters)
    assert set(GMOTConfig.model_conf_keys()) <= params
    conf = GMOTConfig.from_model_conf({"ot_max_iter": 3, "ot_grad": "autodiff", "ws": None})
    assert (conf.max_iter, conf.grad, conf.ws) == (3, "autodiff", None)
