"""Command line for the recipe stages: ``python -m espnet_otreg.data.cli <command> ...``.

Commands (each one ESPnet ``asr.sh`` step, no Kaldi needed)::

    speed_perturb --src data/train --dst data/train_sp --factors 0.9 1.0 1.1   # stage 2
    format --src data/train_sp --dst dump/raw/org/train_sp [--audio_format flac]
           [--fs 16000] [--nj 4] [--skip_bad_audio true|false]                 # stage 3
    filter --src dump/raw/org/train_sp --dst dump/raw/train_sp [--min_duration 0.1]
           [--max_duration 20] [--max_text_len N (0: none)] [--frame_samples 640 (0: no
           CTC check)]                                                         # stage 4
    validate --dir data/train
    check_keys --scp dump/teacher/train_sp/feats.scp --reference dump/raw/train_sp/text
           --what "teacher features" --rebuild "run stage 6 again"             # stage 11
    split --scp dump/raw/test/wav.scp --out logdir/keys.{}.scp --nj 8          # stage 12
    merge --out decode/text --parts logdir/output.*/1best_recog/text          # stage 12
    score --ref dump/raw/test/text --hyp decode/text --utt2spk dump/raw/test/utt2spk
          --out decode/score_cer [--backend auto|sclite|python]                # stage 13

Each prints one line saying what it did; failures exit 1 with the message (file,
utterance, problem) and no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def str2bool(value: str) -> bool:
    """true/false, as ESPnet's and run.sh's options spell them."""
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value == "true"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m espnet_otreg.data.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("speed_perturb")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.0, 1.1])

    s = sub.add_parser("format")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--audio_format", default="flac", choices=["flac", "wav"])
    s.add_argument("--fs", type=int, default=None)
    s.add_argument("--nj", type=int, default=1)
    s.add_argument("--skip_bad_audio", type=str2bool, nargs="?", const=True, default=False,
                   help="true: skip unreadable audio and list it (bad_audio.txt); "
                        "false (default): stop naming every bad utterance")

    s = sub.add_parser("filter")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--min_duration", type=float, default=0.1)
    s.add_argument("--max_duration", type=float, default=20.0)
    s.add_argument("--max_text_len", type=int, default=0, help="characters (0: no limit)")
    s.add_argument("--frame_samples", type=int, default=640,
                   help="samples per encoder frame for the CTC check (0: no check)")
    s.add_argument("--fs", type=int, default=None, help="sampling rate of the audio")

    s = sub.add_parser("validate")
    s.add_argument("--dir", required=True)
    s.add_argument("--no_text", action="store_true")

    s = sub.add_parser("check_keys")
    s.add_argument("--scp", required=True)
    s.add_argument("--reference", required=True, help="every key of this file must be in --scp")
    s.add_argument("--what", default="data", help="what --scp holds, for the message")
    s.add_argument("--rebuild", default="", help="how to rebuild --scp, for the message")

    s = sub.add_parser("split")
    s.add_argument("--scp", required=True)
    s.add_argument("--out", required=True, help="path pattern with {} for 1..nj")
    s.add_argument("--nj", type=int, required=True)

    s = sub.add_parser("merge")
    s.add_argument("--out", required=True)
    s.add_argument("--parts", nargs="+", required=True)

    s = sub.add_parser("score")
    s.add_argument("--ref", required=True)
    s.add_argument("--hyp", required=True)
    s.add_argument("--utt2spk", default=None)
    s.add_argument("--out", required=True)
    s.add_argument("--backend", default="auto", choices=["auto", "sclite", "python"])

    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(name)s) %(message)s")
    from espnet_otreg.data.audio import AudioError
    from espnet_otreg.data.datadir import DataDirError
    from espnet_otreg.data.download import DownloadError

    try:
        return _run(a)
    except (AudioError, DataDirError, DownloadError, FileNotFoundError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1


def _run(a) -> int:
    from espnet_otreg.data.datadir import DataDirError
    if a.cmd == "speed_perturb":
        from espnet_otreg.data.audio import speed_perturb_train_set

        n = speed_perturb_train_set(a.src, a.dst, a.factors)
        print(f"speed_perturb: {a.src} x {a.factors} -> {a.dst} ({n} utterances)")
    elif a.cmd == "format":
        from espnet_otreg.data.audio import format_data_dir

        c = format_data_dir(a.src, a.dst, a.audio_format, a.fs, a.nj, a.skip_bad_audio)
        print(f"format: {a.src} -> {a.dst}: {c['written']} written, {c['bad']} bad "
              f"skipped, of {c['total']}")
    elif a.cmd == "filter":
        from espnet_otreg.data.filtering import filter_data_dir

        c = filter_data_dir(a.src, a.dst, a.min_duration, a.max_duration,
                            a.max_text_len or None, a.frame_samples or None, fs=a.fs)
        Path(a.dst, "filter_counts.json").write_text(json.dumps(c, indent=1) + "\n")
        removed = {k: v for k, v in c.items() if k != "kept" and v}
        print(f"filter: {a.src} -> {a.dst}: kept {c['kept']}, removed "
              f"{sum(removed.values())} {removed or ''} (listed in {a.dst}/removed)")
        if c["kept"] == 0:
            raise DataDirError(f"every utterance of {a.src} was filtered out "
                               f"(counts in {a.dst}/filter_counts.json)")
    elif a.cmd == "validate":
        from espnet_otreg.data.datadir import validate_data_dir

        n = validate_data_dir(a.dir, need_text=not a.no_text)
        print(f"validate: {a.dir} ok ({n} utterances)")
    elif a.cmd == "check_keys":
        from espnet_otreg.data.datadir import check_keys

        n = check_keys(a.scp, a.reference, a.what, a.rebuild)
        print(f"check_keys: {a.scp} has all {n} utterances of {a.reference}")
    elif a.cmd == "split":
        from espnet_otreg.data.datadir import split_scp

        counts = split_scp(a.scp, [a.out.format(i) for i in range(1, a.nj + 1)])
        print(f"split: {a.scp} -> {a.nj} parts {counts}")
    elif a.cmd == "merge":
        from espnet_otreg.data.datadir import merge_kv

        n = merge_kv(a.out, a.parts)
        print(f"merge: {len(a.parts)} parts -> {a.out} ({n} lines)")
    elif a.cmd == "score":
        from espnet_otreg.data.scoring import score

        r = score(a.ref, a.hyp, a.utt2spk, a.out, a.backend)
        print(f"score: {a.out}/result.txt ({r['backend']}): {r['n_snt']} utts, "
              f"{r['n_wrd']} tokens, error rate {r.get('cer', r['err']):.2f}% "
              f"(Sub {r['sub']}% Del {r['del']}% Ins {r['ins']}%), S.Err {r['snt_err']}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
