"""bench.build_bench_models at the tiny preset: both models build and run a step."""

import torch

from espnet_otreg.slm.bench import PRESETS, build_bench_models


def test_build_bench_models_tiny():
    models = build_bench_models("cpu", "tiny")
    assert [m[0] for m in models] == ["base", "otreg"]
    (_, base, kw0), (_, otreg, kw1) = models
    assert kw0 is kw1
    n = [sum(p.numel() for p in m.parameters()) for m in (base, otreg)]
    assert n[0] == n[1]
    assert base.lambda_ot == 0.0 and otreg.lambda_ot > 0
    for m in (base, otreg):
        loss, stats, weight = m(**kw0)
        loss.sum().backward()
        names = [n for n, p in m.named_parameters() if p.requires_grad]
        assert names and all(n.startswith("projector.") for n in names)
        assert all(p.grad is not None for n, p in m.named_parameters() if p.requires_grad)
    assert "loss_ot" not in base(**kw0)[1] and "loss_ot" in otreg(**kw0)[1]
    assert set(PRESETS) == {"tiny", "recipe"}
