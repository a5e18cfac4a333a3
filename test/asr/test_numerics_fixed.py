"""The same losses and gradients on a fixed batch before and after a refactor.

``data/fixed_batch_reference.json`` was written by this file (``python
test/asr/test_numerics_fixed.py --write``) from the code as it was before the model
layer was reorganised; every later version must reproduce it: GM-OT (default options,
``epsilon_mode: relative`` and the epsilon schedule) and OTReg (both costs, both loss
scales, the blank anchor), each loss and the gradient of every parameter (its sum and
its sum of squares), compared as ``test/fingerprint.py`` says (gradients to a
fraction of the step's gradient norm: CPUs round convolutions differently).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fingerprint import assert_step_close  # noqa: E402
from gmot_fixtures import batch, build_model, tiny_config  # noqa: E402

REFERENCE = Path(__file__).with_name("data") / "fixed_batch_reference.json"
GMOT_CASES = {
    "default": {},
    "relative": {"epsilon_mode": "relative"},
    "schedule": {"epsilon_schedule": {"start": 0.5, "end": 0.1, "steps": 4}},
    "tot_cakt_outside": {"alpha": 0.0, "prior": "outside", "ws": None},
}
OTREG_CASES = {
    "sqeuclidean": {},
    "cosine_normalized": {"cost": "cosine", "loss_scale": "normalized"},
    "blank": {"blank": True},
}


def _fingerprint(loss, named_grads):
    out = {"loss": float(loss)}
    for name, g in named_grads:
        if g is not None:
            out[name] = [float(g.double().sum()), float(g.double().pow(2).sum())]
    return out


def gmot_fingerprint(tmp: Path, case: dict) -> dict:
    torch.manual_seed(0)
    model = build_model(tiny_config(tmp, **case))
    model.train()
    b = batch(seed=1)
    out = {}
    for step in range(2):  # two steps: the schedule's epsilon moves
        model.zero_grad()
        torch.manual_seed(10 + step)  # specaug / dropout draws
        loss, stats, _ = model(**b)
        loss.backward()
        out[f"step{step}"] = _fingerprint(loss, [(n, p.grad) for n, p in model.named_parameters()])
        out[f"step{step}"]["stats"] = {k: float(v) for k, v in sorted(stats.items())
                                       if v is not None and k != "loss"}
    return out


def otreg_fingerprint(case: dict) -> dict:
    from espnet_otreg.slm.otreg import otreg_loss

    g = torch.Generator().manual_seed(3)
    speech = torch.randn(3, 9, 8, generator=g).requires_grad_()
    text = torch.randn(3, 5, 8, generator=g)
    smask = torch.arange(9)[None] < torch.tensor([9, 7, 4])[:, None]
    tmask = torch.arange(5)[None] < torch.tensor([5, 3, 2])[:, None]
    ids = torch.tensor([[4, 5, 4, 6, 7], [8, 8, 9, 0, 0], [3, 2, 0, 0, 0]])
    case = dict(case)
    blank = torch.randn(8, generator=g) if case.pop("blank", False) else None
    out = otreg_loss(speech, smask, text, tmask, text_ids=ids, blank=blank, **case)
    out.loss.sum().backward()
    fp = _fingerprint(out.loss.sum(), [("speech", speech.grad)])
    fp["entropy"] = [float(x) for x in out.entropy]
    fp["cosine"] = [float(x) for x in out.cosine]
    return fp


def compute(tmp: Path) -> dict:
    ref = {}
    for name, case in GMOT_CASES.items():
        d = tmp / name
        d.mkdir(parents=True, exist_ok=True)
        ref[f"gmot/{name}"] = gmot_fingerprint(d, case)
    for name, case in OTREG_CASES.items():
        ref[f"otreg/{name}"] = otreg_fingerprint(case)
    return ref


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as the reference was written: reductions then add in one order."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("key", [f"gmot/{k}" for k in GMOT_CASES] + [f"otreg/{k}" for k in OTREG_CASES])
def test_fixed_batch_reproduces_the_reference(key, tmp_path):
    ref = json.loads(REFERENCE.read_text())
    name = key.split("/", 1)[1]
    got = (gmot_fingerprint(tmp_path, GMOT_CASES[name]) if key.startswith("gmot/")
           else otreg_fingerprint(OTREG_CASES[name]))
    assert_step_close(got, ref[key], key)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps(compute(Path(d)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}")
