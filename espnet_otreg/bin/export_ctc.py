"""Export a trained GM-OT model as a stock ESPnet CTC model (recipe stage 15).

GM-OT needs its teacher, adapter and fusion layer for training only: inference is the
acoustic encoder + CTC. This writes ``<output_dir>/config.yaml`` (``model: espnet``,
the GM-OT keys removed from ``model_conf``) and ``<output_dir>/model.pth`` (the
training-only weights removed), which stock ESPnet decodes without espnet_otreg::

    python -m espnet2.bin.asr_inference --asr_train_config D/config.yaml \\
        --asr_model_file D/model.pth ...

The output is identical to ``espnet_otreg.bin.asr_inference`` on the GM-OT model.
ESPnet loads weights with ``strict=False`` and would hide a missing key, so the export
checks that the kept weights and the stock model's state dict have the same key set
and loads them strictly. A global-MVN stats file named in the config is copied into
``output_dir``.

Example::

    python -m espnet_otreg.bin.export_ctc \\
        --asr_train_config exp/asr_train_asr_gmot_raw_zh_char_sp/config.yaml \\
        --asr_model_file exp/asr_train_asr_gmot_raw_zh_char_sp/valid.cer_ctc.ave.pth \\
        --output_dir exp/asr_train_asr_gmot_raw_zh_char_sp/export_ctc
"""

from __future__ import annotations

import argparse
import inspect
import logging
import shutil
import sys
from pathlib import Path

import yaml


def stock_config(conf: dict) -> dict:
    """The training config with ``model: espnet`` and stock ``model_conf`` keys only."""
    from espnet2.asr.espnet_model import ESPnetASRModel

    stock_keys = set(inspect.signature(ESPnetASRModel.__init__).parameters)
    out = dict(conf)
    out["model"] = "espnet"
    out["model_conf"] = {
        k: v for k, v in (conf.get("model_conf") or {}).items() if k in stock_keys
    }
    return out


def export(asr_train_config: Path, asr_model_file: Path, output_dir: Path) -> Path:
    """Write ``output_dir/{config.yaml,model.pth}``; returns the model path."""
    import torch
    from espnet2.tasks.asr import ASRTask

    from espnet_otreg.asr.espnet_model import TRAIN_ONLY_PREFIXES
    from espnet_otreg.tasks.asr import GMOTASRTask

    with open(asr_train_config, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if conf.get("model", "espnet") not in ("gmot", "espnet"):
        raise ValueError(f"{asr_train_config}: model {conf.get('model')!r} is not GM-OT")
    model, _ = GMOTASRTask.build_model_from_file(asr_train_config, asr_model_file, "cpu")
    trained = torch.load(asr_model_file, map_location="cpu")
    missing = set(model.state_dict()) - set(trained)
    if missing:
        raise ValueError(f"{asr_model_file} lacks weights of its own config: {sorted(missing)[:8]}")

    output_dir.mkdir(parents=True, exist_ok=True)
    new = stock_config(conf)
    stats = (new.get("normalize_conf") or {}).get("stats_file")
    if stats:
        dst = output_dir / Path(stats).name
        shutil.copyfile(stats, dst)
        new["normalize_conf"] = {**new["normalize_conf"], "stats_file": str(dst)}

    stock = ASRTask.build_model(argparse.Namespace(**new))
    keep = {k: v for k, v in trained.items() if not k.startswith(TRAIN_ONLY_PREFIXES)}
    want = set(stock.state_dict())
    if set(keep) != want:
        raise ValueError(
            "exported weights and the stock model disagree: "
            f"missing {sorted(want - set(keep))[:8]}, unexpected {sorted(set(keep) - want)[:8]}"
        )
    stock.load_state_dict(keep, strict=True)
    with open(output_dir / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(new, f, allow_unicode=True, sort_keys=False)
    torch.save(keep, output_dir / "model.pth")
    dropped = sorted({k.split(".")[0] for k in trained} - {k.split(".")[0] for k in keep})
    logging.info("exported %d tensors to %s (dropped: %s)", len(keep), output_dir, dropped)
    return output_dir / "model.pth"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--asr_train_config", type=Path, required=True)
    p.add_argument("--asr_model_file", type=Path, required=True)
    p.add_argument("--output_dir", type=Path, required=True)
    return p


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        export(args.asr_train_config, args.asr_model_file, args.output_dir)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"export_ctc: {e}")


if __name__ == "__main__":
    main()
