#!/usr/bin/env python3
"""Stage 1: get AISHELL-1 and write the data dirs data/{train,dev,test}.

Either downloads openslr resource 33 (``data_aishell.tgz``, ``resource_aishell.tgz``;
MD5-checked, resumable) into ``--download_dir`` and extracts it (the per-speaker
``wav/<spk>.tar.gz`` archives inside too), or uses an extracted copy
(``--aishell_dir``, the directory holding ``data_aishell/``).

Data dirs follow ESPnet's AISHELL recipe: utterance id = wav file name
(``BAC009S0002W0122``), speaker = its parent directory (``S0002``), ``text`` = the
word-segmented transcript with the spaces removed (characters are the units).

Mismatches are AISHELL's norm (some wavs have no transcript) and are skipped as in
ESPnet/Kaldi, but never silently: each one is logged and listed in
``data/local/skipped.txt`` (``<utt> <set> <reason>``). A transcript that is not UTF-8
stops the stage, naming the line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from espnet_otreg.data.datadir import DataDirError, read_kv, validate_data_dir, write_data_dir, write_kv
from espnet_otreg.data.download import DownloadError, download, extract_tar

# Published MD5s of openslr resource 33 (as listed by the corpus mirrors and used by
# other toolkits' download scripts).
MD5 = {
    "data_aishell.tgz": "2f494334227864a8a8fec932999db9d8",
    "resource_aishell.tgz": "957d480a0fcac85fc18e550756f624e5",
}
SETS = ("train", "dev", "test")
log = logging.getLogger("data")


def fetch(url_base: str, download_dir: Path, md5: dict) -> Path:
    """Download and extract both archives; returns the dir holding ``data_aishell``."""
    for name in ("resource_aishell.tgz", "data_aishell.tgz"):
        archive = download(f"{url_base.rstrip('/')}/{name}", download_dir / name,
                           md5=md5.get(name))
        extract_tar(archive, download_dir)
    wav_dir = download_dir / "data_aishell" / "wav"
    extract_speaker_archives(wav_dir, wav_dir)
    return download_dir


def extract_speaker_archives(wav_dir: Path, fallback_dir: Path) -> Path:
    """Extract the release's per-speaker ``wav/<spk>.tar.gz`` archives, once; returns
    the directory that holds ``{train,dev,test}/<spk>/<utt>.wav``.

    ``data_aishell.tgz`` holds one archive per speaker; a copy where only the outer
    archive was extracted has them still packed. They are extracted in place when
    ``wav_dir`` is writable, else (a corpus on a read-only mount) into
    ``fallback_dir``, the recipe's own download directory. Each extraction leaves a
    stamp, so a second call (or an already extracted copy) costs a directory listing.
    """
    inner = sorted(wav_dir.glob("*.tar.gz"))
    if not inner:
        return wav_dir
    in_place = all((wav_dir / f".{t.name}.done").is_file() for t in inner)
    dest = wav_dir if in_place or os.access(wav_dir, os.W_OK) else fallback_dir
    if dest != wav_dir:
        log.info("%s is not writable: extracting its %d speaker archives into %s",
                 wav_dir, len(inner), dest)
    for i, spk_tar in enumerate(inner, 1):
        extract_tar(spk_tar, dest)
        if i % 50 == 0 or i == len(inner):
            log.info("extracted %d / %d speaker archives in %s", i, len(inner), dest)
    return dest


def prepare(aishell_dir: Path, out: Path, extract_dir: Path) -> dict:
    """Write ``out/{train,dev,test}``; returns utterance counts per set. Packed speaker
    archives of a read-only ``aishell_dir`` are extracted under ``extract_dir``."""
    root = aishell_dir / "data_aishell"
    if not root.is_dir() and (aishell_dir / "transcript").is_dir():
        root = aishell_dir  # given data_aishell/ itself
    trans_path = root / "transcript" / "aishell_transcript_v0.8.txt"
    if not trans_path.is_file():
        sys.exit(f"ERROR: {trans_path} not found: --aishell_dir must hold data_aishell/")
    # A copy where only data_aishell.tgz was extracted: its wav/<spk>.tar.gz still packed.
    wav_root = extract_speaker_archives(root / "wav", extract_dir)
    trans = read_kv(trans_path, allow_empty_value=True)
    skipped, counts, used = [], {}, set()
    for dset in SETS:
        wavs = sorted((wav_root / dset).glob("*/*.wav"))
        if not wavs:
            sys.exit(f"ERROR: no wav files under {wav_root / dset} (expected "
                     f"{root / 'wav' / dset}/<speaker>/<utt>.wav, or packed "
                     f"{root / 'wav'}/<speaker>.tar.gz archives)")
        wav_scp, text, utt2spk = {}, {}, {}
        for w in wavs:
            utt = w.stem
            if utt not in trans:
                skipped.append((utt, dset, "no transcript"))
                continue
            chars = "".join(trans[utt].split())
            used.add(utt)
            if not chars:
                skipped.append((utt, dset, "empty transcript"))
                continue
            wav_scp[utt] = str(w.resolve())
            text[utt] = chars
            utt2spk[utt] = w.parent.name
        counts[dset] = write_data_dir(out / dset, wav_scp, text, utt2spk)
        validate_data_dir(out / dset)
    for utt in trans:
        if utt not in used:
            skipped.append((utt, "-", "transcript with no audio"))
    write_kv(out / "local" / "skipped.txt", {u: f"{s} {r}" for u, s, r in skipped})
    for reason in ("no transcript", "empty transcript", "transcript with no audio"):
        items = [u for u, _, r in skipped if r == reason]
        if items:
            log.warning("skipped %d utterances (%s), e.g. %s", len(items), reason,
                        ", ".join(items[:5]))
    for u, s, r in skipped[:50]:
        log.info("  skipped %s (%s): %s", u, s, r)
    log.info("data dirs: %s; skipped %d (listed in %s)",
             ", ".join(f"{k}={v}" for k, v in counts.items()), len(skipped),
             out / "local" / "skipped.txt")
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--aishell_dir", type=Path, default=None,
                   help="existing copy: the directory that holds data_aishell/")
    p.add_argument("--download_dir", type=Path, default=Path("downloads"))
    p.add_argument("--url_base", default="https://www.openslr.org/resources/33")
    p.add_argument("--md5sums", type=Path, default=None,
                   help="file of '<md5>  <archive>' lines overriding the published MD5s")
    p.add_argument("--out", type=Path, default=Path("data"))
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(name)s) %(message)s")
    try:
        run(a)
    except (DataDirError, DownloadError) as e:
        sys.exit(f"ERROR: {e}")


def run(a) -> None:
    if a.aishell_dir is None:
        md5 = dict(MD5)
        if a.md5sums:
            for line in a.md5sums.read_text().splitlines():
                if line.strip():
                    h, name = line.split()
                    md5[name] = h
        a.aishell_dir = fetch(a.url_base, a.download_dir, md5)
    prepare(a.aishell_dir, a.out, a.download_dir / "data_aishell" / "wav")


if __name__ == "__main__":
    main()
