"""Training-step cost of our methods against their baselines, in the same run.

    python -m espnet_otreg.bin.bench_step                         # GM-OT vs CTC, CPU, tiny
    python -m espnet_otreg.bin.bench_step --preset recipe --device cuda
    python -m espnet_otreg.bin.bench_step --model slm --preset recipe --device cuda
    python -m espnet_otreg.bin.bench_step --preset recipe --device cuda --amp bf16

A step is what the trainer does per batch: zero_grad, forward, backward, Adam step.
Both models of a pair have the same sizes, weights and batch (see
:mod:`espnet_otreg.bench.gmot` for ``--model gmot`` and :mod:`espnet_otreg.bench.slm`
for ``--model slm``). It prints the median step time and the peak tensor memory of
one step for each, then one JSON line with the ratio (method / baseline). Targets:
GM-OT <= 1.15x plain CTC and OTReg <= 1.05x the base speech-LLM, on a GPU at recipe
sizes.
"""

from __future__ import annotations

import argparse
import json
import logging

import torch

from espnet_otreg.bench.timing import peak_mb, time_ms


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_step(model: torch.nn.Module, batch: dict, amp: str = "none"):
    """One trainer step (zero_grad, forward under autocast if ``amp``, backward, Adam)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-5)
    device_type = next(iter(batch.values())).device.type
    dtype = AMP_DTYPES[amp]
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss, _, _ = model(**batch)
        scaler.scale(loss.sum()).backward()
        scaler.step(opt)
        scaler.update()

    return step


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("gmot", "slm"), default="gmot")
    p.add_argument("--preset", choices=("tiny", "recipe"), default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch_size", type=int, default=None,
                   help="override the preset's batch size (gmot only)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no_memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), default="none",
                   help="forward under torch.autocast in this dtype (as --use_amp does)")
    return p


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "gmot":
        from espnet_otreg.bench.gmot import build_bench_models

        pairs = build_bench_models(args.device, args.preset, args.batch_size)
    else:
        from espnet_otreg.bench.slm import build_bench_models

        pairs = build_bench_models(args.device, args.preset)
    rows = {}
    for name, model, batch in pairs:
        step = make_step(model, batch, args.amp)
        ms = time_ms(step, args.device, args.repeats, warmup=args.warmup)
        mem = None if args.no_memory else peak_mb(step, args.device)
        rows[name] = dict(step_ms=ms, peak_mb=mem)
    (base, _, _), (method, _, _) = pairs
    print(f"bench_step --model {args.model} --preset {args.preset} --amp {args.amp} on "
          f"{args.device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'model':<8} {'step ms':>10} {'peak MB':>10}")
    for name, r in rows.items():
        mem = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        print(f"{name:<8} {r['step_ms']:>10.1f} {mem:>10}")
    ratio = rows[method]["step_ms"] / rows[base]["step_ms"]
    mem_ratio = (rows[method]["peak_mb"] / rows[base]["peak_mb"]
                 if rows[base]["peak_mb"] else None)
    print(f"{method}/{base} step time: {ratio:.3f}x")
    result = dict(model=args.model, preset=args.preset, device=args.device, amp=args.amp,
                  rows=rows, step_ratio=ratio, peak_ratio=mem_ratio)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
