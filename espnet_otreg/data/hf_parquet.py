"""Download FLEURS from the Hugging Face Hub into the local FLEURS layout.

``datasets`` >= 4 no longer runs dataset scripts, so ``load_dataset("google/fleurs")``
fails. Two script-free routes, both producing the layout read by
:mod:`espnet_otreg.data.fleurs` (``<root>/<lang>/{split}.tsv`` +
``<root>/<lang>/audio/<split>/*.wav``):

* ``source="parquet"`` (default): the Hub's parquet conversion of the dataset, on the
  ``refs/convert/parquet`` revision, laid out as ``<config>/<split>/NNNN.parquet`` with
  splits ``train``/``validation``/``test``. Columns (the dataset's features): ``id``,
  ``num_samples``, ``path``, ``audio`` (struct ``{bytes, path}``: the wav file and its
  name), ``transcription``, ``raw_transcription``, ``gender`` (0 male, 1 female,
  2 other), ``lang_id``, ``language``, ``lang_group_id``. Shards are read with pyarrow
  (the engine under ``datasets``) batch by batch, so memory stays small and no second
  Arrow cache copy is made. If the conversion of a split was truncated (the converter
  names such splits ``partial-<split>``), we refuse: a partial training set would be
  silently smaller than FLEURS.
* ``source="archive"``: the original files of the ``main`` revision,
  ``data/<lang>/<split>.tsv`` and ``data/<lang>/audio/<split>.tar.gz``.

Every file comes through ``huggingface_hub.hf_hub_download`` (resumes interrupted
downloads in its cache) and is then verified against the SHA-256 the Hub lists for it
(LFS files); a verified file gets a ``.sha256`` stamp so a rerun does not re-hash it. A
mismatch raises naming the file. A language/split whose tsv exists is complete (the tsv
is written last, atomically), so an interrupted stage 1 resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from espnet_otreg.data.fleurs import SPLITS, FleursDataError, read_tsv, write_tsv

log = logging.getLogger(__name__)

REPO_ID = "google/fleurs"
PARQUET_REVISION = "refs/convert/parquet"
#: FLEURS split on disk -> split name in the Hub's parquet conversion.
HUB_SPLIT = {"train": "train", "dev": "validation", "test": "test"}
_GENDERS = ("MALE", "FEMALE", "OTHER")


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, sha256: str | None) -> None:
    """Check ``path`` against ``sha256`` (skipped when the Hub lists none, i.e. small
    non-LFS files, which git itself checks). Stamps ``<path>.sha256`` on success."""
    if not sha256:
        return
    stamp = Path(str(path) + ".sha256")
    if stamp.is_file() and stamp.read_text().strip() == sha256:
        return
    got = sha256sum(path)
    if got != sha256:
        raise FleursDataError(
            f"checksum mismatch for {path}: expected sha256 {sha256}, got {got}; delete it "
            "and rerun stage 1 to download it again"
        )
    try:
        stamp.write_text(sha256 + "\n")
    except OSError:  # read-only cache: verification still happened
        pass


class HubClient:
    """The two Hub calls we need; tests pass a fake with the same methods."""

    def __init__(self, token: str | None = None):
        from huggingface_hub import HfApi

        # Token only from the environment (HF_TOKEN) or the user's login; never logged.
        self.api = HfApi(token=token)

    def list_files(self, repo_id: str, prefix: str, revision: str) -> list[tuple[str, str | None]]:
        """``[(path in repo, sha256 or None)]`` of the files under ``prefix``."""
        out = []
        for item in self.api.list_repo_tree(
            repo_id, path_in_repo=prefix, recursive=True, revision=revision, repo_type="dataset"
        ):
            if hasattr(item, "lfs") or hasattr(item, "blob_id"):
                lfs = getattr(item, "lfs", None)
                out.append((item.path, lfs.sha256 if lfs else None))
        return out

    def download(self, repo_id: str, filename: str, revision: str, cache_dir: str | None) -> str:
        return self.api.hf_hub_download(
            repo_id, filename, repo_type="dataset", revision=revision, cache_dir=cache_dir
        )


def _fetch(client, repo_id, filename, sha, revision, cache_dir) -> str:
    try:
        path = client.download(repo_id, filename, revision, cache_dir)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise FleursDataError(
            f"download of {repo_id}@{revision}:{filename} failed ({type(e).__name__}: {e}); "
            "rerun stage 1 to resume"
        ) from e
    verify(path, sha)
    return path


def parquet_shards(
    client, repo_id: str, lang: str, split: str, revision: str = PARQUET_REVISION
) -> list[tuple[str, str | None]]:
    """The parquet shards of one language/split, in order."""
    hub_split = HUB_SPLIT[split]
    files = client.list_files(repo_id, lang, revision)
    pat = re.compile(rf"^{re.escape(lang)}/(partial-)?{hub_split}/(\d+)\.parquet$")
    found = [(m, p, s) for p, s in files if (m := pat.match(p))]
    if any(m.group(1) for m, _, _ in found):
        raise FleursDataError(
            f"the Hub's parquet conversion of {repo_id} {lang}/{hub_split} is partial "
            "(truncated by the converter); use --fleurs_source archive for the full split"
        )
    if not found:
        raise FleursDataError(
            f"no parquet files for {lang}/{hub_split} in {repo_id}@{revision} "
            f"({len(files)} files under {lang}/); is {lang!r} a configuration of {repo_id}?"
        )
    return [(p, s) for m, p, s in sorted(found, key=lambda t: int(t[0].group(2)))]


def parquet_to_layout(
    shard_paths: Sequence[str], lang: str, split: str, out_root: str | os.PathLike,
    batch_size: int = 64, progress: Callable[[int], Any] | None = None,
) -> int:
    """Write the wavs of parquet shards to ``<out_root>/<lang>/audio/<split>/`` and their
    tsv (last). Rows without audio bytes or with an empty transcript raise, naming the
    shard and row. Returns the number of rows."""
    import pyarrow.parquet as pq

    root = Path(out_root) / lang
    adir = root / "audio" / split
    adir.mkdir(parents=True, exist_ok=True)
    rows, n = [], 0
    cols = ["id", "num_samples", "audio", "transcription", "raw_transcription", "gender"]
    for shard in shard_paths:
        pf = pq.ParquetFile(shard)
        missing = [c for c in cols if c not in pf.schema_arrow.names]
        if missing:
            raise FleursDataError(f"{shard}: missing columns {missing} (not a FLEURS shard?)")
        for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
            for rec in batch.to_pylist():
                where = f"{shard} row {n}"
                audio = rec["audio"] or {}
                name = Path(audio.get("path") or f"{rec['id']}_{n}.wav").name
                if not audio.get("bytes"):
                    raise FleursDataError(f"{where}: no audio bytes for {lang} {name}")
                if not (rec["raw_transcription"] or "").strip():
                    raise FleursDataError(f"{where}: empty transcript for {lang} {name}")
                dst = adir / name
                if not dst.is_file() or dst.stat().st_size != len(audio["bytes"]):
                    tmp = dst.with_name("." + name + ".tmp")
                    tmp.write_bytes(audio["bytes"])
                    os.replace(tmp, dst)
                g = rec["gender"]
                gender = _GENDERS[g] if isinstance(g, int) and 0 <= g < 3 else str(g)
                rows.append((rec["id"], name, rec["raw_transcription"], rec["transcription"],
                             "", rec["num_samples"], gender))
                n += 1
                if progress:
                    progress(1)
    write_tsv(root / f"{split}.tsv", rows)
    return n


def download_fleurs(
    out_root: str | os.PathLike,
    langs: Sequence[str],
    splits: Sequence[str] = SPLITS,
    source: str = "parquet",
    repo_id: str = REPO_ID,
    cache_dir: str | None = None,
    client=None,
) -> dict[tuple[str, str], int]:
    """Fetch ``langs`` x ``splits`` into ``out_root`` (resumable; see module docstring).
    Returns ``{(lang, split): rows}`` for the pairs done in this call (0 = already there)."""
    if source not in ("parquet", "archive"):
        raise FleursDataError(f"--fleurs_source must be parquet or archive, got {source!r}")
    client = client or HubClient(token=os.environ.get("HF_TOKEN"))
    done = {}
    from tqdm import tqdm

    for lang in langs:
        for split in splits:
            if split not in SPLITS:
                raise FleursDataError(f"unknown split {split!r}")
            tsv = Path(out_root) / lang / f"{split}.tsv"
            if tsv.is_file():
                log.info("%s exists: %s %s already downloaded", tsv, lang, split)
                done[(lang, split)] = 0
                continue
            if source == "parquet":
                shards = parquet_shards(client, repo_id, lang, split)
                paths = [_fetch(client, repo_id, p, s, PARQUET_REVISION, cache_dir) for p, s in shards]
                import pyarrow.parquet as pq

                total = sum(pq.ParquetFile(x).metadata.num_rows for x in paths)
                bar = tqdm(total=total, desc=f"{lang} {split}", unit="utt", mininterval=5)
                done[(lang, split)] = parquet_to_layout(paths, lang, split, out_root,
                                                        progress=bar.update)
                bar.close()
            else:
                listing = dict(client.list_files(repo_id, f"data/{lang}", "main"))
                names = [f"data/{lang}/audio/{split}.tar.gz", f"data/{lang}/{split}.tsv"]
                for name in names:
                    if name not in listing:
                        raise FleursDataError(f"{repo_id} has no {name}; is {lang!r} a FLEURS code?")
                tgz = _fetch(client, repo_id, names[0], listing[names[0]], "main", cache_dir)
                src_tsv = _fetch(client, repo_id, names[1], listing[names[1]], "main", cache_dir)
                adir = Path(out_root) / lang / "audio"
                adir.mkdir(parents=True, exist_ok=True)
                link = adir / f"{split}.tar.gz"
                if not link.exists():
                    os.symlink(os.path.realpath(tgz), link)
                rows = read_tsv(src_tsv)  # validates the rows before we accept the pair
                tmp = tsv.with_name(tsv.name + ".tmp")
                shutil.copyfile(src_tsv, tmp)
                os.replace(tmp, tsv)  # tsv last: marks the pair complete
                done[(lang, split)] = len(rows)
            log.info("%s %s: %d utterances", lang, split, done[(lang, split)])
    return done
