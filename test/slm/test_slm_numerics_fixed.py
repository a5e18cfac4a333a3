"""The SLM's losses, gradients and greedy hypotheses on a fixed batch, before and after
a refactor.

``data/fixed_batch_reference.json`` was written by this file (``python
test/slm/test_slm_numerics_fixed.py --write``) from ``ESPnetSLMModel`` as it was before
sequence assembly, the phase plan and decoding moved out of ``slm/espnet_model.py``;
every later version must reproduce it: phase 2 with OTReg and CTC (the whole forward:
assembly, CE, OT, CTC), phase 1, a batch with a skipped utterance, and greedy decoding;
compared as ``test/fingerprint.py`` says.
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
from slm_helpers import build_tiny_dirs, make_batch, task_args  # noqa: E402

REFERENCE = Path(__file__).with_name("data") / "fixed_batch_reference.json"
ITEMS = [
    ("utt_a", 16000, "hello world", "en_us"),
    ("utt_b", 9000, "the cat sat on the mat", "fr_fr"),
    ("utt_c", 12000, "a dog ran in the park", "en_us"),
]
CASES = {
    "phase2_ot_ctc": dict(phase=2, lambda_ot=0.3, ctc_weight=0.5),
    "phase2_cosine_normalized": dict(phase=2, lambda_ot=0.3, ot_cost="cosine",
                                     ot_loss_scale="normalized", ot_blank=False),
    "phase1": dict(phase=1),
    "skip_empty": dict(phase=2, lambda_ot=0.3),
}


def _build(dirs, conf):
    from espnet_otreg.tasks.slm import SLMTask

    torch.manual_seed(0)
    args = task_args(*dirs, **conf)
    return SLMTask.build_model(args), SLMTask.build_preprocess_fn(args, True)


def fingerprint(dirs, name: str) -> dict:
    model, pre = _build(dirs, CASES[name])
    items = list(ITEMS)
    if name == "skip_empty":
        items[1] = ("utt_b", 9000, "", "fr_fr")
    uids, batch = make_batch(pre, items)
    model.train()
    model.zero_grad()
    torch.manual_seed(1)
    loss, stats, weight = model(**batch, utt_id=uids)
    loss.backward()
    out = {"loss": float(loss), "weight": float(weight),
           "stats": {k: float(v) for k, v in sorted(stats.items()) if v is not None}}
    for n, p in model.named_parameters():
        if p.grad is not None:
            out[n] = [float(p.grad.double().sum()), float(p.grad.double().pow(2).sum())]
    if name == "phase2_ot_ctc":
        model.eval()
        _, dec = make_batch(pre, ITEMS, with_text=False)
        dec = {k: v for k, v in dec.items() if not k.startswith("text")}
        hyps, reasons = model.generate(**dec, max_new_tokens=6)
        out["hyps"], out["reasons"] = hyps, reasons
    return out


def compute(tmp: Path) -> dict:
    dirs = build_tiny_dirs(tmp)
    return {name: fingerprint(dirs, name) for name in CASES}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return build_tiny_dirs(tmp_path_factory.mktemp("slm_fixed"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_slm_reproduces_reference(dirs, name):
    torch.set_num_threads(1)  # the reference was written with one thread
    ref = json.loads(REFERENCE.read_text())[name]
    assert_step_close(fingerprint(dirs, name), ref, name)


if __name__ == "__main__":
    import tempfile

    if "--write" not in sys.argv:
        sys.exit("usage: python test/slm/test_slm_numerics_fixed.py --write")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps(compute(Path(d)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}")
