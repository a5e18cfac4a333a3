#!/usr/bin/env python3
"""Stage 16: upload a packed model to the Hugging Face Hub.

The token comes only from the environment variable ``HF_TOKEN``; it is never read
from the command line, printed or written. The repository is created private unless
``--public`` (as in the AISHELL recipe) when it does not exist.
The zip is unpacked into the model repository (``meta.yaml``, config, weights,
RESULTS.md), with ``RESULTS.md`` also as the model card (``README.md``).
"""

import argparse
import os
import tempfile
import zipfile
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--packed", type=Path, required=True)
    p.add_argument("--repo", required=True, help="<user or org>/<name>")
    p.add_argument("--public", action="store_true", help="create the repository public")
    a = p.parse_args(argv)
    if not a.packed.is_file():
        raise SystemExit(f"upload_hf.py: error: {a.packed} does not exist (stage 14 packs it)")
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise SystemExit("upload_hf.py: error: set HF_TOKEN (a Hugging Face write token) in the "
                         "environment to upload")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.whoami()
    except Exception as e:  # noqa: BLE001 - message must not echo a token
        raise SystemExit(f"upload_hf.py: error: not authenticated to the Hub "
                         f"({type(e).__name__}); check HF_TOKEN")
    api.create_repo(a.repo, repo_type="model", private=not a.public, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(a.packed) as z:
            z.extractall(tmp)
        res = next(Path(tmp).rglob("RESULTS.md"), None)
        if res is not None:
            (Path(tmp) / "README.md").write_text(
                "---\ntags: [espnet, espnet-otreg, speech-recognition, fleurs]\n---\n\n"
                + res.read_text(encoding="utf-8"), encoding="utf-8")
        api.upload_folder(folder_path=tmp, repo_id=a.repo, repo_type="model",
                          commit_message=f"upload {a.packed.name}")
    print(f"uploaded {a.packed} to https://huggingface.co/{a.repo}")


if __name__ == "__main__":
    main()
