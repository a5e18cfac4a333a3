"""The model-zoo round trip: what stage 16 uploads, and loading it back.

ESPnet models on the Hugging Face Hub are the *unpacked* zip of ``espnet2.bin.pack``:
``meta.yaml`` at the repository root and the ``exp/...`` tree it names. That is what
``espnet_model_zoo``'s ``ModelDownloader`` reads after ``snapshot_download`` (it rewrites
the paths in the yaml files to the local copy), so ``Speech2Text.from_pretrained
("<user>/<repo>")`` works. This module

- :func:`zoo_layout` unpacks a packed zip into that layout (plus extra files, e.g. the
  full GM-OT zip next to the plain CTC export) and
- :func:`model_card` writes ``README.md`` with huggingface_hub's ``ModelCard`` API:
  ``library_name: espnet``, language, datasets, license, base model, model-index
  metrics read from RESULTS.md (:func:`espnet_otreg.recipe.results.read_metrics`), a
  usage snippet;
- :func:`upload` creates the repository (private unless ``public``) and uploads the
  folder; the token comes only from ``$HF_TOKEN`` and is never printed;
- :func:`load_folder` returns the ``Speech2Text`` keyword arguments of such a folder on
  local disk (a copy of it, with the zoo's own path rewriting), for a folder that is not
  (or not yet) on the Hub. Zips and Hub names go through ``from_pretrained`` directly.
- Speech-LLM: :func:`slm_from_pretrained` is ``from_pretrained`` for the SLM decoder
  (``espnet_otreg.bin.slm_inference.Speech2TextSLM``) through the same zoo code (zip,
  Hub name, or local folder); :func:`export_peft_adapter` saves the trained LoRA
  weights of a packed SLM also as a PEFT adapter (``save_pretrained``:
  ``adapter_config.json`` + ``adapter_model.safetensors``), loadable on the base LLM with
  ``peft.PeftModel.from_pretrained(base_llm, <dir>)``.

Command line (stage 16)::

    python -m espnet_otreg.recipe.zoo prepare --packed exp/.../export.zip --out exp/.../hf \\
        --results exp/.../RESULTS.md --repo user/name --language zh --dataset aishell ...
    python -m espnet_otreg.recipe.zoo upload --dir exp/.../hf --repo user/name [--public]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_otreg.recipe.results import read_metrics

TASKS = {"cer": "automatic-speech-recognition", "wer": "automatic-speech-recognition"}


def zoo_layout(packed: Path, out_dir: Path, extra: Sequence[Path] = ()) -> Path:
    """Unpack ``packed`` (an ``espnet2.bin.pack`` zip) into ``out_dir`` as the zoo reads
    it from the Hub (``meta.yaml`` at the root); copy ``extra`` files beside it."""
    packed, out_dir = Path(packed), Path(out_dir)
    if not packed.is_file():
        raise FileNotFoundError(f"{packed}: no such packed model (stage 14 writes it)")
    with zipfile.ZipFile(packed) as z:
        names = z.namelist()
        if "meta.yaml" not in names:
            raise ValueError(f"{packed}: not an ESPnet model zip (no meta.yaml at its root)")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        for n in names:
            if n.startswith("/") or ".." in Path(n).parts:
                raise ValueError(f"{packed}: member {n!r} escapes the folder")
        z.extractall(out_dir)
    for f in extra:
        shutil.copy2(f, out_dir / Path(f).name)
    return out_dir


def _usage(repo: str, kind: str, extra_zip: Optional[str]) -> str:
    if kind == "slm":
        return (
            "```python\n"
            "import espnet_otreg  # pip install espnet-otreg\n"
            "from espnet_otreg.recipe.zoo import slm_from_pretrained\n\n"
            f"speech2text = slm_from_pretrained(\"{repo}\")\n"
            "```\n")
    text = (
        "```python\n"
        "# pip install espnet espnet_model_zoo\n"
        "import soundfile\n"
        "from espnet2.bin.asr_inference import Speech2Text\n\n"
        f"speech2text = Speech2Text.from_pretrained(\"{repo}\", ctc_weight=1.0, "
        "beam_size=1, lm_weight=0.0)\n"
        "speech, rate = soundfile.read(\"speech.wav\")  # 16 kHz mono\n"
        "text, *_ = speech2text(speech)[0]\n"
        "print(text)\n"
        "```\n")
    if extra_zip:
        text += (
            "\nThe full training-time model (with the GM-OT adapter) is the zip beside it; "
            "it loads after `import espnet_otreg`:\n\n"
            "```python\n"
            "import espnet_otreg  # pip install espnet-otreg\n"
            "from huggingface_hub import hf_hub_download\n"
            "from espnet2.bin.asr_inference import Speech2Text\n\n"
            f"zip_path = hf_hub_download(\"{repo}\", \"{extra_zip}\")\n"
            "speech2text = Speech2Text.from_pretrained(zip_path, ctc_weight=1.0, beam_size=1)\n"
            "```\n")
    return text


def model_card(out_dir: Path, *, repo: str, results: Optional[Path], language: List[str],
               datasets: List[str], license: str, base_model: List[str], model_name: str,
               description: str, kind: str = "asr", extra_zip: Optional[str] = None,
               tags: Sequence[str] = ()) -> Path:
    """Write ``out_dir/README.md`` with huggingface_hub's ModelCard API."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    metrics = read_metrics(results) if results and Path(results).is_file() else []
    eval_results = [
        EvalResult(task_type=TASKS.get(m["metric"], "automatic-speech-recognition"),
                   dataset_type=m.get("dataset_id") or m["dataset"],
                   dataset_name=m["dataset"], dataset_split=m["split"],
                   metric_type=m["metric"], metric_value=m["value"],
                   metric_name=f"{m['metric'].upper()} ({m['system']}, {m['decoding']})"
                   if m.get("decoding") else m["metric"].upper())
        for m in metrics]
    data = ModelCardData(
        language=language or None, license=license, library_name="espnet",
        datasets=datasets or None, base_model=base_model or None,
        pipeline_tag="automatic-speech-recognition",
        tags=["espnet", "audio", "automatic-speech-recognition", "espnet-otreg", *tags],
        model_name=model_name, eval_results=eval_results or None)
    body = [f"# {model_name}", "", description, "", "## Usage", "",
            _usage(repo, kind, extra_zip)]
    if results and Path(results).is_file():
        res = Path(results).read_text(encoding="utf-8")
        body += ["## Results", "", "\n".join(l for l in res.splitlines()
                                             if not l.startswith("<!--"))]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
    out = Path(out_dir) / "README.md"
    card.save(out)
    return out


def upload(folder: Path, repo: str, public: bool = False) -> None:
    """Create ``repo`` (private unless ``public``) and upload ``folder`` to it."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise SystemExit("zoo upload: error: HF_HUB_OFFLINE=1 is set; unset it to upload")
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise SystemExit("zoo upload: error: set HF_TOKEN (a Hugging Face write token) in "
                         "the environment to upload")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.whoami()
    except Exception as e:  # noqa: BLE001 - the message must not echo the token
        raise SystemExit(f"zoo upload: error: not authenticated to the Hub "
                         f"({type(e).__name__}); check HF_TOKEN") from None
    api.create_repo(repo, repo_type="model", private=not public, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                      commit_message=f"upload {Path(folder).name}")
    print(f"uploaded {folder} to https://huggingface.co/{repo}")


def load_folder(folder: Path, cache_dir: Optional[Path] = None) -> Dict[str, str]:
    """``Speech2Text``/``from_pretrained`` keyword arguments for a zoo folder on disk.

    The folder is copied to ``cache_dir`` (a temporary dir if None) and read with the
    zoo's own Hub-snapshot code (``ModelDownloader._unpack_cache_dir_for_huggingfase``),
    which rewrites the paths in the yaml files: exactly what a Hub download does.
    """
    from espnet_model_zoo.downloader import ModelDownloader

    folder = Path(folder)
    if not (folder / "meta.yaml").is_file():
        raise FileNotFoundError(f"{folder}: no meta.yaml (not an ESPnet model folder)")
    dst = Path(cache_dir or tempfile.mkdtemp(prefix="espnet_zoo_")) / folder.name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(folder, dst)
    return ModelDownloader._unpack_cache_dir_for_huggingfase(str(dst))


def download_and_unpack(name: str, cachedir: Optional[Path] = None) -> Dict[str, str]:
    """The zoo's ``{key: local file}`` for a packed zip, a Hub name or a local zoo folder."""
    if Path(name).is_dir():
        return load_folder(Path(name), cachedir)
    from espnet_model_zoo.downloader import ModelDownloader

    return ModelDownloader(cachedir).download_and_unpack(name)


def map_config_strings(conf, fn):
    """``conf`` (nested dicts and lists from a YAML config) with every string value
    replaced by ``fn(value)``."""
    if isinstance(conf, dict):
        return {k: map_config_strings(v, fn) for k, v in conf.items()}
    if isinstance(conf, list):
        return [map_config_strings(v, fn) for v in conf]
    return fn(conf) if isinstance(conf, str) else conf


def config_dirs(conf, base: Path) -> List[Path]:
    """The directories under ``base`` that string values of ``conf`` name by a relative
    path (a local model dir in a config: packed with the model, resolved on unpacking)."""
    found: List[Path] = []

    def visit(v: str) -> str:
        if v and not os.path.isabs(v) and "/" in v and (base / v).is_dir():
            found.append(base / v)
        return v

    map_config_strings(conf, visit)
    return sorted(set(found))


def _resolve_dirs(config: Path) -> None:
    """Rewrite relative paths in ``config`` that name a *directory* of the unpacked model
    (a local LLM/Whisper dir packed with it) to absolute ones. The zoo rewrites paths of
    files only when it unpacks a zip (and directories too for Hub snapshots)."""
    import yaml

    root = config.parent
    while not (root / "meta.yaml").is_file() and root != root.parent:
        root = root.parent

    d = yaml.safe_load(config.read_text(encoding="utf-8"))
    dirs = {str(p) for p in config_dirs(d, root)}
    fixed = map_config_strings(d, lambda v: str(root / v) if str(root / v) in dirs else v)
    config.write_text(yaml.safe_dump(fixed, allow_unicode=True, sort_keys=False), encoding="utf-8")


def slm_from_pretrained(name: str, device: str = "cpu", cachedir: Optional[Path] = None):
    """``Speech2TextSLM`` (the SLM decoder of ``espnet_otreg.bin.slm_inference``) from a
    packed zip (stage 14), a Hub name (``<user>/<repo>[@revision]``) or a local folder,
    through espnet_model_zoo as ``Speech2Text.from_pretrained`` does."""
    from espnet_otreg.bin.slm_inference import Speech2TextSLM

    kw = download_and_unpack(name, cachedir)
    if "slm_train_config" not in kw:
        raise ValueError(f"{name}: not a packed speech-LLM (its meta.yaml has {sorted(kw)})")
    _resolve_dirs(Path(kw["slm_train_config"]))
    return Speech2TextSLM(kw["slm_train_config"], kw.get("slm_model_file"), device=device)


def export_peft_adapter(config: Path, model_file: Path, out_dir: Path) -> Optional[Path]:
    """Save the LoRA adapters of a trained SLM as a PEFT adapter dir; None without LoRA."""
    from espnet_otreg.tasks.slm import SLMTask

    model, _ = SLMTask.build_model_from_file(config, model_file, "cpu")
    llm = model.llm
    if not hasattr(llm, "peft_config"):
        return None
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    llm.save_pretrained(str(out_dir))
    return out_dir


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare", help="zoo folder + model card from a packed zip")
    s.add_argument("--packed", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--extra", type=Path, nargs="*", default=[], help="files to put beside it")
    s.add_argument("--results", type=Path, default=None)
    s.add_argument("--repo", default="<user>/<name>", help="the Hub name (usage snippet)")
    s.add_argument("--language", nargs="*", default=[])
    s.add_argument("--dataset", nargs="*", default=[])
    s.add_argument("--license", default="apache-2.0")
    s.add_argument("--base_model", nargs="*", default=[])
    s.add_argument("--model_name", required=True)
    s.add_argument("--description", default="")
    s.add_argument("--kind", choices=["asr", "slm"], default="asr")
    s.add_argument("--tags", nargs="*", default=[])
    u = sub.add_parser("upload", help="upload a prepared folder (token: $HF_TOKEN)")
    u.add_argument("--dir", type=Path, required=True)
    u.add_argument("--repo", required=True)
    u.add_argument("--public", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "prepare":
        try:
            out = zoo_layout(a.packed, a.out, a.extra)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            sys.exit(f"zoo prepare: error: {e}")
        model_card(out, repo=a.repo, results=a.results, language=a.language,
                   datasets=a.dataset, license=a.license, base_model=a.base_model,
                   model_name=a.model_name, description=a.description, kind=a.kind,
                   extra_zip=a.extra[0].name if a.extra else None, tags=a.tags)
        print(f"zoo folder: {out} (meta.yaml, model card README.md)")
    else:
        if not (a.dir / "meta.yaml").is_file():
            sys.exit(f"zoo upload: error: {a.dir} has no meta.yaml (run stage 16's prepare)")
        upload(a.dir, a.repo, a.public)


if __name__ == "__main__":
    main()
