"""gpu_check --device cpu --quick: every part runs and the JSON line reports each check."""

import json

from espnet_otreg.bin import gpu_check


def test_gpu_check_quick_cpu(capsys):
    result = gpu_check.main(["--device", "cpu", "--quick", "--repeats", "1"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == json.loads(json.dumps(result, sort_keys=True))
    assert result["ok"] and result["failed"] == []
    assert {"bench_ot", "bench_step_gmot", "bench_step_slm", "train_gmot", "train_slm"} <= set(
        result
    )
    assert result["bench_step_gmot"]["amp"] == "bf16" and result["bench_step_slm"]["step_ratio"] > 0
    for name in ("train_gmot", "train_slm"):
        r = result[name]
        assert r["losses_finite"] and r["plan_finite"] and r["steps"] == 3
        n_changed, n = map(int, r["params_changed"].split("/"))
        assert n_changed == n > 0


def test_a_failing_part_is_reported_and_the_rest_runs(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image")

    monkeypatch.setattr(gpu_check, "train_check", broken)
    result = gpu_check.main(["--device", "cpu", "--quick", "--skip", "bench_ot",
                             "--skip", "bench_step"])
    assert not result["ok"] and result["failed"] == ["train_gmot", "train_slm"]
    assert "no kernel image" in result["train_gmot"]["error"]
