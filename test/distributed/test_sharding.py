"""The SLM as a sharded optimiser sees it (docs/slm.md, "Sharding"), on CPU.

The full recipe's set-up: frozen LLM loaded in bf16, LoRA adapters and the projector
trainable. DeepSpeed ZeRO (ESPnet's ``--use_deepspeed``) and any sharded optimiser
partition the trainable parameters and their optimiser state, and DeepSpeed saves
``model.state_dict()`` as the checkpoint's "module". Checked here: which parameters are
trainable and in which dtype, that none shares storage with another (a tied trainable
weight would be partitioned twice), that the optimiser ESPnet builds keeps state for
exactly those, that the state dict is exactly them and loads back, and that the
DeepSpeed config in the docs parses as ESPnet reads it (and as DeepSpeed does, where
``deepspeed`` is installed; it is not in CI, and DeepSpeed itself needs CUDA).
"""

import json
import re

import pytest
import torch
from dist_helpers import ROOT
from slm_helpers import build_tiny_dirs, make_batch, task_args

from espnet_otreg.tasks.slm import SLMTask

pytest.importorskip("peft")

ITEMS = [("utt_a", 16000, "hello world", "en_us"),
         ("utt_b", 9000, "the cat sat on the mat", "fr_fr")]


@pytest.fixture(scope="module")
def recipe_like(tmp_path_factory):
    dirs = build_tiny_dirs(tmp_path_factory.mktemp("shard_models"))
    args = task_args(*dirs, phase=2, lambda_ot=0.3)
    args.llm_conf = dict(args.llm_conf, dtype="bfloat16", lora=dict(r=2, lora_alpha=4))
    args.optim, args.optim_conf = "adam", dict(lr=1e-3)
    model = SLMTask.build_model(args)
    model.to(dtype=torch.float32)  # what ESPnet's trainer does with --train_dtype float32
    return model, args


def test_trainable_groups_are_projector_and_lora_in_fp32(recipe_like):
    model, _ = recipe_like
    named = list(model.named_parameters())
    trainable = [(n, p) for n, p in named if p.requires_grad]
    frozen = [(n, p) for n, p in named if not p.requires_grad]
    assert trainable and all(n.startswith("projector.") or ".lora_" in n for n, _ in trainable)
    assert any(".lora_" in n for n, _ in trainable)
    assert all(p.dtype == torch.float32 for _, p in trainable), \
        {n: p.dtype for n, p in trainable if p.dtype != torch.float32}
    llm_frozen = [p for n, p in frozen if n.startswith("llm.")]
    assert llm_frozen and all(p.dtype == torch.bfloat16 for p in llm_frozen)
    # no trainable parameter shares storage with any other parameter
    ptrs = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        ptrs.setdefault(p.data_ptr(), []).append(n)
    for n, p in trainable:
        assert len(ptrs[p.data_ptr()]) == 1, ptrs[p.data_ptr()]


def test_optimizer_state_is_for_trainable_parameters_only(recipe_like):
    model, args = recipe_like
    (optim,) = SLMTask.build_optimizers(args, model)
    pre = SLMTask.build_preprocess_fn(args, True)
    uids, batch = make_batch(pre, ITEMS)
    loss, _, _ = model(**batch, utt_id=uids)
    loss.backward()
    optim.step()
    with_state = {id(p) for p in optim.state}
    expected = {id(p) for p in model.parameters() if p.requires_grad}
    assert with_state == expected
    optim.zero_grad(set_to_none=True)


def test_state_dict_is_the_trainable_parameters_and_loads_back(recipe_like):
    model, args = recipe_like
    sd = model.state_dict()
    assert set(sd) == {n for n, p in model.named_parameters() if p.requires_grad}
    fresh = SLMTask.build_model(args)
    fresh.load_state_dict(sd, strict=True)  # frozen weights come from their path
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k].to(v.dtype)), k


def _docs_deepspeed_config():
    text = (ROOT / "docs" / "slm.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/slm.md should hold one DeepSpeed config (```json)"
    return json.loads(blocks[0])


def test_docs_deepspeed_config_parses_as_espnet_reads_it(tmp_path):
    conf = _docs_deepspeed_config()
    assert conf["zero_optimization"]["stage"] in (1, 2)
    assert conf["bf16"]["enabled"] is True and "fp16" not in conf
    from espnet2.train.deepspeed_trainer import DeepSpeedTrainer

    assert DeepSpeedTrainer.setup_data_dtype(conf) is torch.bfloat16
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(conf))
    args = SLMTask.get_parser().parse_args(
        ["--use_deepspeed", "true", "--deepspeed_config", str(path)])
    assert args.use_deepspeed is True and args.deepspeed_config == str(path)


def test_docs_deepspeed_config_parses_with_deepspeed():
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (not in CI)")
    from deepspeed.runtime.config import DeepSpeedConfig

    conf = _docs_deepspeed_config()
    ds = DeepSpeedConfig(conf, world_size=2)
    assert ds.zero_optimization_stage == conf["zero_optimization"]["stage"]
    assert ds.bfloat16_enabled
