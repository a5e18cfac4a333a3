#!/usr/bin/env python3
"""Upload a packed model to the Hugging Face Hub by hand (stage 16 does the same through
``python -m espnet_otreg.recipe.zoo``): the zip unpacked as the model zoo reads it
(``meta.yaml`` at the root) plus a model card.

The token comes only from the environment variable ``HF_TOKEN``; it is never read
from the command line, printed or written. The repository is created private unless
``--public``.
"""

import argparse
import os
import tempfile
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--packed", type=Path, required=True)
    p.add_argument("--repo", required=True, help="<user or org>/<name>")
    p.add_argument("--results", type=Path, default=Path("RESULTS.md"))
    p.add_argument("--public", action="store_true", help="create the repository public")
    a = p.parse_args(argv)
    if not a.packed.is_file():
        raise SystemExit(f"upload_hf.py: error: {a.packed} does not exist (stage 14 packs it)")
    if not os.environ.get("HF_TOKEN"):
        raise SystemExit("upload_hf.py: error: set HF_TOKEN (a Hugging Face write token) in the "
                         "environment to upload")
    from espnet_otreg.recipe.zoo import model_card, upload, zoo_layout

    with tempfile.TemporaryDirectory() as tmp:
        out = zoo_layout(a.packed, Path(tmp) / "model")
        model_card(out, repo=a.repo, results=a.results, language=[], datasets=["google/fleurs"],
                   license="apache-2.0", base_model=[], model_name=a.packed.stem,
                   description="A speech-LLM trained with egs2/fleurs_otreg/asr1 of espnet-otreg.",
                   kind="slm")
        upload(out, a.repo, a.public)


if __name__ == "__main__":
    main()
