"""Everything only a GPU can tell, in one command and one JSON line.

::

    python -m espnet_otreg.bin.gpu_check                 # on a GPU machine (about 8 min)
    python -m espnet_otreg.bin.gpu_check --device cpu --quick   # the same code paths, CI

Three parts, in this order (a part that fails is reported and the others still run):

1. ``bench_ot``: our OT solvers against POT at the reference and the large batch
   (``--quick``: tiny sizes), dense and windowed; the JSON ratios (POT time / ours).
2. ``bench_step`` for GM-OT vs plain CTC and OTReg vs the base speech-LLM, at the
   recipe sizes under bf16 autocast (``--quick``: tiny presets): step-time ratio and
   peak-memory ratio, each pair measured in the same run.
3. Training: ``--steps`` steps (20) of the GM-OT and the OTReg model with AMP (bf16
   autocast; fp16 with a GradScaler where bf16 is missing) and the recipes' optimisers
   (GM-OT: Adam 1e-3, weight decay 1e-6, WarmupLR; OTReg: AdamW 1e-4, WarmupLR; grad
   clip 5) on a fixed batch: every loss finite, the trained parameters changed, and the
   OT plans of the last state finite (GM-OT's coupling gamma*, OTReg's plan).

The last line of the output is one JSON object: ``ok`` (every check passed), the
figures of each part, ``failed`` (what did not pass) and ``wall_s``. Exit status 1 when
a check failed. Record the figures in docs/benchmarks.md with this command.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import traceback
from typing import Callable, Dict, List

import torch

#: The recipes' optimisers (conf/train_asr_gmot.yaml, conf/train_slm_otreg.yaml).
RECIPE_OPTIM = {
    "gmot": dict(optim=torch.optim.Adam, lr=1e-3, weight_decay=1e-6, warmup_steps=35000),
    "slm": dict(optim=torch.optim.AdamW, lr=1e-4, weight_decay=0.01, warmup_steps=1000),
}
GRAD_CLIP = 5.0


def amp_dtype(device: str) -> torch.dtype:
    """bf16 where the device has it (CPU autocast does), else fp16 (with a GradScaler)."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _plan(model, batch) -> torch.Tensor:
    """The OT plan(s) of ``batch`` in the model's current state (no gradient)."""
    with torch.no_grad():
        if hasattr(model, "coupling"):  # GM-OT: gamma* between frames and teacher tokens
            keys = ("speech", "speech_lengths", "text", "text_lengths", "teacher_feats",
                    "teacher_feats_lengths")
            return model.coupling(**{k: batch[k] for k in keys})[0]
        z, z_lens = model.encode(batch["speech"], batch["speech_lengths"])
        text, t_lens = batch["text"], batch["text_lengths"]
        z, text = z[:, : int(z_lens.max())], text[:, : int(t_lens.max())]
        return model.otreg(z, z_lens, text, t_lens).plan


def train_check(name: str, model, batch: Dict, device: str, steps: int) -> Dict:
    """``steps`` AMP steps with the recipe's optimiser; finite losses, parameters move,
    finite plans."""
    from espnet2.schedulers.warmup_lr import WarmupLR

    conf = RECIPE_OPTIM[name]
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = conf["optim"](params, lr=conf["lr"], weight_decay=conf["weight_decay"])
    sched = WarmupLR(opt, warmup_steps=conf["warmup_steps"])
    dtype = amp_dtype(device)
    device_type = torch.device(device).type
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)
    model.train()
    losses: List[float] = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=dtype):
            loss, stats, _ = model(**batch)
        scaler.scale(loss.sum()).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        scaler.step(opt)
        scaler.update()
        sched.step()
        losses.append(float(loss.detach().sum()))
    with torch.autocast(device_type, dtype=dtype):
        plan = _plan(model.eval(), batch)
    changed = sum(not torch.equal(b, p.detach()) for b, p in zip(before, params))
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    plan_finite = bool(torch.isfinite(plan).all())
    return dict(
        amp=str(dtype).replace("torch.", ""), steps=steps, loss_first=losses[0],
        loss_last=losses[-1], losses_finite=finite, params_changed=f"{changed}/{len(params)}",
        plan_finite=plan_finite, ok=finite and plan_finite and changed == len(params),
    )


def _part(results: Dict, failed: List[str], key: str, fn: Callable[[], Dict]) -> None:
    t0 = time.perf_counter()
    try:
        results[key] = fn()
        if results[key].get("ok") is False:
            failed.append(key)
    except Exception as e:  # report it and run the other parts
        traceback.print_exc()
        results[key] = dict(ok=False, error=f"{type(e).__name__}: {e}")
        failed.append(key)
    results[key]["wall_s"] = round(time.perf_counter() - t0, 1)
    logging.info(f"gpu_check: {key} done in {results[key]['wall_s']} s")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes everywhere: the same code paths in under a minute")
    p.add_argument("--steps", type=int, default=None, help="training steps (20; quick: 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of the benchmarks")
    p.add_argument("--skip", action="append", default=[],
                   choices=["bench_ot", "bench_step", "train"], help="leave a part out")
    return p


def main(argv=None) -> Dict:
    from espnet_otreg.bench import gmot as gmot_bench
    from espnet_otreg.bench import slm as slm_bench
    from espnet_otreg.bin import bench_ot, bench_step

    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    dev = args.device
    preset = "tiny" if args.quick else "recipe"
    steps = args.steps or (3 if args.quick else 20)
    results: Dict = dict(device=torch.cuda.get_device_name() if dev.startswith("cuda") else dev,
                         torch=torch.__version__, quick=args.quick)
    failed: List[str] = []

    if "bench_ot" not in args.skip:
        ot_args = ["--device", dev, "--repeats", str(args.repeats)]
        _part(results, failed, "bench_ot",
              lambda: bench_ot.main(ot_args + (["--quick"] if args.quick else [])))
    if "bench_step" not in args.skip:
        for model in ("gmot", "slm"):
            step_args = ["--model", model, "--preset", preset, "--device", dev, "--amp", "bf16",
                         "--repeats", str(args.repeats), "--warmup", "1"]
            _part(results, failed, f"bench_step_{model}", lambda: {
                k: v for k, v in bench_step.main(step_args).items() if k != "device"
            })
    if "train" not in args.skip:
        for name, builder in (("gmot", gmot_bench), ("slm", slm_bench)):
            def run(name=name, builder=builder):
                _, model, batch = builder.build_bench_models(dev, preset)[1]  # the method
                return train_check(name, model, batch, dev, steps)

            _part(results, failed, f"train_{name}", run)

    results.update(ok=not failed, failed=failed, wall_s=round(time.perf_counter() - t0, 1))
    print(json.dumps(results, sort_keys=True))
    return results


if __name__ == "__main__":
    raise SystemExit(0 if main()["ok"] else 1)
