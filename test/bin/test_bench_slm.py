"""bench.build_bench_models at the tiny preset: both models build and run a step."""


from espnet_otreg.bench.slm import PRESETS, build_bench_models


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


def test_recipe_preset_sizes_on_meta_device():
    """The GPU preset has the real sizes (built on the meta device: no memory, no init)."""
    (_, base, kw), (_, otreg, _) = build_bench_models("meta", "recipe")
    assert base.llm is otreg.llm and base.encoder is otreg.encoder  # one copy in memory
    n_llm = sum(p.numel() for p in base.llm.parameters())
    n_enc = sum(p.numel() for p in base.encoder.parameters())
    assert 1.50e9 < n_llm < 1.56e9  # Qwen2.5-1.5B
    assert 0.62e9 < n_enc < 0.65e9  # Whisper-large-v3 encoder
    assert kw["speech"].shape[0] == 8 and kw["speech"].shape[1] <= 15 * 16000
