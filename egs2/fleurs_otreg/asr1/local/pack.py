#!/usr/bin/env python3
"""Stage 14: pack a trained system as an ESPnet model zip (espnet2's ``pack``).

The zip holds ``meta.yaml``, the training config (``slm_train_config``), the model
weights (``slm_model_file``: projector, LoRA/trainable parts; the frozen pretrained
encoder and LLM are named in the config and loaded from the Hub by name, as in
training), ``RESULTS.md``, the score files and modality-gap reports of this system, and
any local model directory the config points to (the mini recipe's tiny models).

With LoRA adapters in the LLM, they are also saved as a PEFT adapter
(``<exp_dir>/peft_adapter``: ``adapter_config.json``, ``adapter_model.safetensors``,
``save_pretrained``) and packed too: ``peft.PeftModel.from_pretrained(<base LLM>,
<dir>)`` loads them without ESPnet. The packed model loads back with
``espnet_otreg.recipe.zoo.slm_from_pretrained(<zip or Hub name>)``.
"""

import argparse
from pathlib import Path

import yaml


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp_dir", type=Path, required=True)
    p.add_argument("--model", default="valid.acc.ave.pth")
    p.add_argument("--results", type=Path, default=Path("RESULTS.md"))
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    from espnet2.main_funcs.pack_funcs import pack

    config = a.exp_dir / "config.yaml"
    model = a.exp_dir / a.model
    for f in (config, model):
        if not f.exists():
            raise SystemExit(f"pack.py: error: {f} does not exist (train first: stage 11)")
    from espnet_otreg.recipe.zoo import config_dirs, export_peft_adapter

    peft_dir = export_peft_adapter(config, model, a.exp_dir / "peft_adapter")
    if peft_dir is not None:
        print(f"PEFT adapter: {peft_dir}")
    option = [a.results] if a.results.is_file() else []
    if peft_dir is not None:
        option += sorted(f for f in peft_dir.rglob("*") if f.is_file())
    option += sorted(a.exp_dir.glob("decode_*/*/score/*"))
    option += sorted(a.exp_dir.glob("modality_gap/*/*"))
    for d in config_dirs(yaml.safe_load(config.read_text()), Path.cwd()):
        option += sorted(f for f in d.rglob("*") if f.is_file())
    pack(files={"slm_model_file": model}, yaml_files={"slm_train_config": config},
         outpath=a.out, option=option)
    print(f"packed {len(option) + 2} files into {a.out}")


if __name__ == "__main__":
    main()
