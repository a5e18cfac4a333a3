#!/usr/bin/env python3
"""Stage 16: upload the packed model, the exported stock CTC model and RESULTS.md to a
Hugging Face model repository.

The token comes only from the environment (``HF_TOKEN``, or a ``huggingface-cli login``
cache); it is never printed or written. The repository is created (private unless
``--public``) when it does not exist.
"""
import argparse
import os
import sys
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repo", required=True, help="<user or org>/<name>")
    p.add_argument("--packed_model", type=Path, required=True)
    p.add_argument("--export_dir", type=Path, required=True)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--public", action="store_true")
    a = p.parse_args()
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        sys.exit("ERROR: HF_HUB_OFFLINE=1 is set; unset it to upload")
    from huggingface_hub import HfApi

    api = HfApi(token=os.environ.get("HF_TOKEN"))  # None: the login cache, if any
    api.create_repo(a.repo, repo_type="model", private=not a.public, exist_ok=True)
    api.upload_file(path_or_fileobj=str(a.packed_model), path_in_repo=a.packed_model.name,
                    repo_id=a.repo)
    api.upload_folder(folder_path=str(a.export_dir), path_in_repo="export_ctc",
                      repo_id=a.repo, ignore_patterns=["check/*"])
    api.upload_file(path_or_fileobj=str(a.results), path_in_repo="RESULTS.md", repo_id=a.repo)
    print(f"uploaded to https://huggingface.co/{a.repo}")


if __name__ == "__main__":
    main()
