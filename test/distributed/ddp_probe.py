"""Run an ESPnet training CLI under torchrun and record, per rank, what DDP did.

    torchrun --nproc_per_node 2 test/distributed/ddp_probe.py PROBE_DIR MODULE [CLI ARGS...]

``MODULE`` is a training entry point (``espnet_otreg.bin.asr_train``, ``..slm_train``);
its ``main`` runs unchanged. The probe only observes, through public hooks:

- every ``optimizer.step()`` (a global pre-hook): how many trainable parameters the
  optimiser holds, and those that got no gradient in that step, by name (ESPnet zeroes
  gradients with ``set_to_none``, so a ``None`` gradient means "not in this step's
  backward pass");
- every training forward of the model (a forward hook): the utterance ids, the batch's
  ``skip_*`` counts and the stat keys that are not None;
- at the end, the rank's model ``state_dict()`` (to compare with the checkpoint rank 0
  saved).

Written to ``PROBE_DIR/rank{R}.json`` and ``PROBE_DIR/rank{R}.pth``.
"""

import importlib
import json
import os
import sys
from pathlib import Path


def main():
    out, module, cli = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ["RANK"])

    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    from espnet2.tasks.abs_task import AbsTask

    mod = importlib.import_module(module)
    tasks = [v for v in vars(mod).values()
             if isinstance(v, type) and issubclass(v, AbsTask) and v is not AbsTask]
    assert len(tasks) == 1, tasks
    task = tasks[0]
    box = {}
    steps, forwards = [], []

    orig_build = task.build_model.__func__

    def build_model(cls, args):
        model = orig_build(cls, args)
        box["model"] = model
        box["names"] = {id(p): n for n, p in model.named_parameters()}

        def on_forward(module, args, kwargs, output):
            if not module.training:
                return
            stats = output[1] if isinstance(output, tuple) else output["stats"]
            forwards.append(dict(
                utt_id=list(kwargs.get("utt_id") or []),
                skipped={k: float(v) for k, v in stats.items()
                         if k.startswith("skip_") and v is not None},
                # what ESPnet's trainer all-gathers, key by key, after dropping None
                keys=sorted(k for k, v in stats.items() if v is not None),
            ))

        model.register_forward_hook(on_forward, with_kwargs=True)
        return model

    task.build_model = classmethod(build_model)

    def before_step(optimizer, args, kwargs):
        # ESPnet hands the optimiser every parameter; frozen ones never get a gradient
        params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        steps.append(dict(
            n_params=len(params),
            no_grad=sorted(box["names"].get(id(p), "?") for p in params if p.grad is None),
        ))

    register_optimizer_step_pre_hook(before_step)

    mod.main(cli)

    model = box["model"]
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
               out / f"rank{rank}.pth")
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    (out / f"rank{rank}.json").write_text(json.dumps(dict(
        rank=rank, world_size=int(os.environ["WORLD_SIZE"]), steps=steps,
        forwards=forwards, trainable=trainable,
    ), indent=1))


if __name__ == "__main__":
    main()
