"""Smoke test of the OT benchmark script (tiny sizes; timings are not asserted)."""

import json

from espnet_otreg.bin import bench_ot


def test_bench_ot_quick_prints_table_and_json(capsys, tmp_path):
    out = tmp_path / "bench.json"
    summary = bench_ot.main(["--quick", "--device", "cpu", "--json-out", str(out)])
    printed = capsys.readouterr().out
    assert "| ours, batched, 50 its |" in printed
    assert "POT entropic FGW (numpy)" in printed
    last = json.loads(printed.strip().splitlines()[-1])
    assert last == json.loads(out.read_text()) == json.loads(json.dumps(summary, sort_keys=True))
    for key in ("quick_sinkhorn_fwd_vs_pot_loop", "quick_fgw_fwd_vs_pot_loop",
                "quick_fgw_fwdbwd_vs_pot_torch_loop", "quick_sinkhorn_fwd_vs_pot_batch"):
        assert last[key] > 0, key


def test_batches_are_padded_with_mixed_lengths():
    batch = bench_ot.make_batch(8, (5, 9), (2, 4), 3, "cpu")
    assert batch["x"].shape == (8, 9, 3) and batch["y"].shape == (8, 4, 3)
    assert len(set(batch["xm"].sum(-1).tolist())) > 1
    same = bench_ot.make_batch(4, (5, 9), (2, 4), 3, "cpu", same_length=True)
    assert same["xm"].all() and same["ym"].all()
