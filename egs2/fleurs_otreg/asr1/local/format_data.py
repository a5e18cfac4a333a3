#!/usr/bin/env python3
"""Stages 3-4: format audio into dump/raw/<set> (16 kHz, checked) and filter.

Stage 3 (``--step format``): every utterance is read and checked (missing, unreadable,
empty audio stops the stage naming all bad utterances; see
espnet_otreg.data.audio.format_data_dir), resampled to --fs and written as --audio_format;
utt2lang is carried over.

Stage 4 (``--step filter``): training/validation sets only lose utterances outside
[--min_wav_duration, --max_wav_duration] seconds (Whisper's encoder sees at most 30 s) or
with transcripts longer than --max_text_len characters; each removed utterance is listed
with its reason in <dst>/removed and the counts are printed. Test sets are never
filtered (a dropped test utterance would flatter the WER).
"""

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from espnet_otreg.data.datadir import DataDirError, read_kv, validate_data_dir, write_kv


def carry_utt2lang(src: Path, dst: Path) -> None:
    keys = read_kv(dst / "wav.scp")
    lang = read_kv(src / "utt2lang")
    missing = [k for k in keys if k not in lang]
    if missing:
        raise DataDirError(f"{src / 'utt2lang'}: no language for {len(missing)} utterances, e.g. {missing[:5]}")
    write_kv(dst / "utt2lang", {k: lang[k] for k in keys})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step", choices=["format", "filter"], required=True)
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--dst", type=Path, required=True)
    p.add_argument("--fs", type=int, default=16000)
    p.add_argument("--audio_format", default="flac", choices=["flac", "wav"])
    p.add_argument("--nj", type=int, default=4)
    p.add_argument("--skip_bad_audio", default="false", choices=["true", "false"])
    p.add_argument("--min_wav_duration", type=float, default=0.1)
    p.add_argument("--max_wav_duration", type=float, default=30.0)
    p.add_argument("--max_text_len", type=int, default=0, help="characters; 0: no limit")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if a.step == "format":
            from espnet_otreg.data.audio import AudioError, format_data_dir

            validate_data_dir(a.src)
            try:
                counts = format_data_dir(a.src, a.dst, audio_format=a.audio_format, fs=a.fs, nj=a.nj,
                                         skip_bad=a.skip_bad_audio == "true")
            except AudioError as e:
                sys.exit(f"format_data.py: error: {e}")
            carry_utt2lang(a.src, a.dst)
            print(f"{a.dst}: {counts['written']} of {counts['total']} utterances formatted, "
                  f"{counts['bad']} with bad audio" + (f" (listed in {a.dst / 'bad_audio.txt'})" if counts["bad"] else ""))
        else:
            from espnet_otreg.data.filtering import filter_data_dir

            if a.dst.exists():
                shutil.rmtree(a.dst)
            counts = filter_data_dir(a.src, a.dst, min_duration=a.min_wav_duration,
                                     max_duration=a.max_wav_duration,
                                     max_text_len=a.max_text_len or None, frame_samples=None,
                                     fs=a.fs)
            carry_utt2lang(a.src, a.dst)
            (a.dst / "filter_counts.json").write_text(json.dumps(counts, indent=1) + "\n")
            removed = sum(v for k, v in counts.items() if k != "kept")
            print(f"{a.src} -> {a.dst}: kept {counts['kept']}, removed {removed} "
                  f"({', '.join(f'{k} {v}' for k, v in counts.items() if k != 'kept' and v)})"
                  + (f"; listed in {a.dst / 'removed'}" if removed else ""))
            if counts["kept"] == 0:
                sys.exit(f"format_data.py: error: every utterance of {a.src} was filtered out")
    except DataDirError as e:
        sys.exit(f"format_data.py: error: {e}")


if __name__ == "__main__":
    main()
