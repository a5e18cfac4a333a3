"""FLEURS recipe stage 14/16 for the speech-LLM: the packed zip (and the stage-16
folder) load back through the zoo with ``slm_from_pretrained``; LoRA weights are also
saved as a PEFT adapter that peft loads on the base LLM alone. Tiny models, offline."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "fleurs_otreg" / "asr1"
sys.path.insert(0, str(REPO / "test" / "slm"))
from slm_helpers import build_tiny_dirs, task_args  # noqa: E402

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    peft = pytest.importorskip("peft")  # noqa: F841
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet_otreg.tasks.slm import SLMTask

    work = tmp_path_factory.mktemp("fleurs_zoo")
    old = os.getcwd()
    os.chdir(work)  # paths in the config relative to the recipe dir, as run.sh writes them
    try:
        llm, whisper = build_tiny_dirs(Path("mini/exp/mini_models"))
        args = task_args(Path("mini/exp/mini_models/llm"), Path("mini/exp/mini_models/whisper"))
        args.llm_conf["lora"] = dict(r=2, lora_alpha=4)
        torch.manual_seed(0)
        model = SLMTask.build_model(args)
        with torch.no_grad():  # trained-looking adapters (peft starts lora_B at zero)
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.1)
        exp = Path("mini/exp/slm_train_slm_otreg")
        exp.mkdir(parents=True)
        torch.save(model.state_dict(), exp / "valid.acc.ave.pth")
        args.output_dir = str(exp)
        with open(exp / "config.yaml", "w", encoding="utf-8") as f:
            yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
        Path("mini/RESULTS.md").write_text("# RESULTS\n")
    finally:
        os.chdir(old)
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    zip_path = exp / "slm_train_slm_otreg_packed.zip"
    r = subprocess.run([sys.executable, str(RECIPE / "local/pack.py"), "--exp_dir", str(exp),
                        "--results", "mini/RESULTS.md", "--out", str(zip_path)], cwd=work,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, "-m", "espnet_otreg.recipe.zoo", "prepare", "--packed",
                        str(zip_path), "--out", str(exp / "hf"), "--results", "mini/RESULTS.md",
                        "--kind", "slm", "--model_name", "tiny SLM", "--language", "en", "de",
                        "--dataset", "google/fleurs", "--base_model", "openai/whisper-large-v3"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return work, exp, model.state_dict()


def test_packed_zip_holds_the_peft_adapter(packed):
    work, exp, _ = packed
    names = zipfile.ZipFile(work / exp / "slm_train_slm_otreg_packed.zip").namelist()
    assert f"{exp}/peft_adapter/adapter_config.json" in names
    assert any(n.startswith(f"{exp}/peft_adapter/adapter_model") for n in names)
    assert "mini/exp/mini_models/llm/config.json" in names  # the local base model travels


def test_peft_adapter_loads_on_the_base_llm(packed):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    work, exp, sd = packed
    base = AutoModelForCausalLM.from_pretrained(work / "mini/exp/mini_models/llm")
    peft_model = PeftModel.from_pretrained(base, work / exp / "peft_adapter")
    lora = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    assert lora
    for k, v in lora.items():
        ours = sd["llm." + k.replace("lora_A.weight", "lora_A.default.weight")
                  .replace("lora_B.weight", "lora_B.default.weight")]
        assert torch.equal(v, ours), k


@pytest.mark.parametrize("what", ["zip", "folder"])
def test_slm_from_pretrained(packed, what, tmp_path):
    from espnet_otreg.recipe.zoo import slm_from_pretrained

    work, exp, sd = packed
    src = work / exp / ("slm_train_slm_otreg_packed.zip" if what == "zip" else "hf")
    old = os.getcwd()
    os.chdir(tmp_path)  # nothing relative to the recipe dir may be needed
    try:
        s2t = slm_from_pretrained(str(src), cachedir=tmp_path / "cache")
    finally:
        os.chdir(old)
    loaded = s2t.model.state_dict()
    assert set(loaded) == set(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert s2t.tokenizer is not None
