"""Filter a formatted data dir by duration and transcript length (ESPnet stage 4).

ESPnet's ``asr.sh`` stage 4 drops utterances shorter than ``min_wav_duration`` (0.1 s)
or longer than ``max_wav_duration`` (20 s) and utterances with an empty transcript.
We do the same and add two checks that ESPnet leaves to the trainer:

- a transcript longer than ``max_text_len`` characters,
- a transcript that CTC cannot emit in the available frames: CTC needs at least one
  encoder frame per token plus one blank between repeated tokens, and the encoder
  has ``num_samples // frame_samples`` frames (``frame_samples`` = hop length times
  the encoder's subsampling, 160 * 4 = 640 at 16 kHz for a conv2d Conformer). Such
  utterances give an infinite CTC loss (ESPnet then zeroes it, silently).

Every dropped utterance is reported: counts per reason in the log and the returned
dict, and one line ``<utt> <reason>`` in ``<dst>/removed``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Optional, Union

from espnet_otreg.data.datadir import read_kv, subset_data_dir, write_kv

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)


def ctc_min_frames(tokens: str) -> int:
    """Frames CTC needs for the character sequence ``tokens``: one per character plus
    one blank between two equal neighbours."""
    chars = [c for c in tokens if not c.isspace()]
    return len(chars) + sum(a == b for a, b in zip(chars, chars[1:]))


def filter_data_dir(
    src: PathLike,
    dst: PathLike,
    min_duration: float = 0.1,
    max_duration: float = 20.0,
    max_text_len: Optional[int] = None,
    frame_samples: Optional[int] = 640,
    fs: Optional[int] = None,
) -> Dict[str, int]:
    """Copy the utterances of ``src`` that pass every check to ``dst``.

    Args:
        src: formatted data dir (needs ``utt2num_samples`` and ``text``).
        min_duration, max_duration: bounds in seconds (inclusive).
        max_text_len: longest transcript in characters (spaces not counted); None = no
            limit.
        frame_samples: samples per encoder output frame for the CTC check; None skips
            it.
        fs: sample rate; default: read from the first audio file of ``wav.scp``.

    Returns counts ``{"kept", "too_short", "too_long", "empty_text", "text_too_long",
    "ctc_infeasible"}``. An utterance failing several checks counts once, under the
    first reason in that order.
    """
    src, dst = Path(src), Path(dst)
    nsamp = {k: int(v) for k, v in read_kv(src / "utt2num_samples").items()}
    text = read_kv(src / "text", allow_empty_value=True)
    if fs is None:
        import soundfile as sf

        first = next(iter(read_kv(src / "wav.scp").values()))
        fs = sf.info(first).samplerate
    counts = dict(kept=0, too_short=0, too_long=0, empty_text=0, text_too_long=0,
                  ctc_infeasible=0)
    removed, keep = {}, []
    for utt, n in nsamp.items():
        dur = n / fs
        t = text.get(utt, "")
        nchar = sum(not c.isspace() for c in t)
        if dur < min_duration:
            reason = "too_short"
        elif dur > max_duration:
            reason = "too_long"
        elif nchar == 0:
            reason = "empty_text"
        elif max_text_len is not None and nchar > max_text_len:
            reason = "text_too_long"
        elif frame_samples and ctc_min_frames(t) > n // frame_samples:
            reason = "ctc_infeasible"
        else:
            keep.append(utt)
            counts["kept"] += 1
            continue
        counts[reason] += 1
        removed[utt] = f"{reason} duration={dur:.2f}s chars={nchar}"
    subset_data_dir(src, dst, keep)
    for name in ("feats_type", "audio_format"):
        if (src / name).is_file():
            (dst / name).write_text((src / name).read_text())
    write_kv(dst / "removed", removed)
    summary = ", ".join(f"{k}={v}" for k, v in counts.items())
    log.info("%s -> %s: %s", src, dst, summary)
    for utt, why in list(removed.items())[:20]:
        log.info("  removed %s: %s", utt, why)
    if len(removed) > 20:
        log.info("  ... %d more in %s", len(removed) - 20, dst / "removed")
    return counts
