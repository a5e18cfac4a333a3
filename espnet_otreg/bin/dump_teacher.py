"""Cache the GM-OT teacher's token features for a data dir (recipe stage 6).

Runs the frozen teacher named in the training config (``model_conf.teacher``,
``model_conf.teacher_layer``) once per distinct transcript of ``--text`` and writes
``<output_dir>/feats.ark`` and ``feats.scp`` (kaldiio): one ``(M, D)`` float32 matrix
per utterance id, ``M`` = teacher tokens without [CLS]/[SEP]. Utterances with the same
transcript (e.g. the speed-perturbed copies ``sp0.9-*``, ``sp1.1-*``) share one matrix
in the ark, so the cache costs one copy per transcript.

Training then reads them with
``--train_data_path_and_name_and_type <output_dir>/feats.scp,teacher_feats,kaldi_ark``.

Restartable: with a complete ``feats.scp`` already there (every utterance of
``--text``, same teacher) it does nothing; an interrupted run leaves only ``*.tmp``
files, which the next run overwrites.

Example::

    python -m espnet_otreg.bin.dump_teacher --asr_config conf/train_asr_gmot.yaml \\
        --text dump/raw/train_sp/text --output_dir dump/teacher/train_sp --ngpu 1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

import yaml


def read_text(path: Path) -> Dict[str, str]:
    """``<utt_id> <transcript>`` lines; a clear error for bad encoding or duplicates."""
    out: Dict[str, str] = {}
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid UTF-8 ({e})") from None
            if not line.strip():
                continue
            uid, *rest = line.split(maxsplit=1)  # a space or a tab after the id
            text = rest[0] if rest else ""
            if uid in out:
                raise ValueError(f"{path}:{n}: utterance {uid!r} appears twice")
            out[uid] = text.strip()
    return out


def teacher_from_config(path: Path, teacher: Optional[str], layer: Optional[int]):
    with open(path, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    mc = conf.get("model_conf") or {}
    name = teacher or mc.get("teacher", "bert-base-chinese")
    lay = layer if layer is not None else int(mc.get("teacher_layer", -1))
    return name, lay


def _complete(out_dir: Path, uids, meta: dict) -> bool:
    scp, meta_file = out_dir / "feats.scp", out_dir / "teacher.yaml"
    if not (scp.exists() and meta_file.exists()):
        return False
    with open(meta_file, encoding="utf-8") as f:
        if yaml.safe_load(f) != meta:
            return False
    with open(scp, encoding="utf-8") as f:
        have = {line.split(maxsplit=1)[0] for line in f if line.strip()}
    return set(uids) <= have


def dump(
    text: Path,
    output_dir: Path,
    teacher: str,
    layer: int = -1,
    batch_size: int = 32,
    device: str = "cpu",
) -> Path:
    """Write ``output_dir/feats.{ark,scp}`` for every utterance of ``text``."""
    import kaldiio
    from tqdm import tqdm

    from espnet_otreg.asr.teacher import Teacher

    utts = read_text(text)
    meta = {"teacher": teacher, "teacher_layer": layer, "text": str(Path(text).resolve())}
    output_dir.mkdir(parents=True, exist_ok=True)
    if _complete(output_dir, utts, meta):
        logging.info("%s/feats.scp is complete (%d utterances): nothing to do", output_dir, len(utts))
        return output_dir / "feats.scp"

    by_text: Dict[str, List[str]] = defaultdict(list)
    for uid, t in utts.items():
        by_text[t].append(uid)
    for t, uids in by_text.items():
        if not t:
            logging.warning(
                "empty transcript: %s get a (0, D) feature matrix; GM-OT skips them "
                "and counts them in the n_skipped_gmot training stat", ", ".join(uids)
            )
    texts = sorted(by_text, key=len)  # similar lengths together: less padding
    model = Teacher(teacher, layer, device)
    logging.info(
        "teacher %s (layer %d, dim %d): %d utterances, %d distinct transcripts",
        teacher, layer, model.dim, len(utts), len(texts),
    )
    ark_tmp, scp_tmp = output_dir / "feats.ark.tmp", output_dir / "feats.scp.tmp"
    rep_scp = output_dir / "feats.rep.scp.tmp"
    n_trunc = 0
    with kaldiio.WriteHelper(f"ark,scp:{ark_tmp},{rep_scp}") as writer:
        for i in tqdm(range(0, len(texts), batch_size), desc="teacher", unit="batch",
                      disable=None):
            chunk = texts[i : i + batch_size]
            feats, lengths, truncated = model(chunk)
            for j in truncated:
                logging.warning("truncated to %d tokens: %s", model.max_length, by_text[chunk[j]][0])
            n_trunc += len(truncated)
            feats = feats.cpu().numpy()
            for t, f, n in zip(chunk, feats, lengths.tolist()):
                writer(by_text[t][0], f[:n])
    # The ark was written under one representative id per transcript; point every
    # utterance at its transcript's matrix, under the final ark name.
    ark = output_dir / "feats.ark"
    where = {}
    with open(rep_scp, encoding="utf-8") as f:
        for line in f:
            key, loc = line.split(maxsplit=1)
            where[key] = loc.strip().replace(str(ark_tmp), str(ark))
    with open(scp_tmp, "w", encoding="utf-8") as f:
        for uid, t in sorted(utts.items()):
            f.write(f"{uid} {where[by_text[t][0]]}\n")
    os.replace(ark_tmp, ark)
    os.replace(scp_tmp, output_dir / "feats.scp")
    rep_scp.unlink()
    # What the cache was made from: a later run with other settings redoes it.
    with open(output_dir / "teacher.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(meta, f, allow_unicode=True)
    logging.info("wrote %s (%d utterances, %d truncated)", output_dir / "feats.scp", len(utts), n_trunc)
    return output_dir / "feats.scp"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--asr_config", type=Path, required=True,
                   help="training YAML; its model_conf names the teacher")
    p.add_argument("--text", type=Path, required=True, help="<utt_id> <transcript> file")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--teacher", default=None, help="override model_conf.teacher")
    p.add_argument("--teacher_layer", type=int, default=None,
                   help="override model_conf.teacher_layer")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: the first GPU")
    return p


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    teacher, layer = teacher_from_config(args.asr_config, args.teacher, args.teacher_layer)
    try:
        dump(args.text, args.output_dir, teacher, layer, args.batch_size,
             "cuda" if args.ngpu > 0 else "cpu")
    except ValueError as e:
        sys.exit(f"dump_teacher: {e}")


if __name__ == "__main__":
    main()
