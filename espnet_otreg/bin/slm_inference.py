#!/usr/bin/env python3
"""Batched greedy / beam decoding with a trained OTReg speech-LLM.

::

    python -m espnet_otreg.bin.slm_inference \\
        --slm_train_config exp/slm/config.yaml --slm_model_file exp/slm/valid.acc.ave.pth \\
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound \\
        --data_path_and_name_and_type dump/raw/test/utt2lang,lang,text \\
        --output_dir exp/slm/decode_test --batch_size 8 --ngpu 1 [--beam_size 4] [--nj 4]

Writes ``<output_dir>/text`` (``<utt_id> <hypothesis>``, sorted by utterance id, like
ESPnet's ``1best_recog/text``) and ``<output_dir>/skipped`` (``<utt_id> <reason>``) for
utterances that cannot be decoded (audio shorter than one projector step, prompt longer
than the LLM context); they get an empty hypothesis, so scoring counts them as deletions.

Parallel jobs as in ESPnet: ``--key_file`` restricts decoding to the listed utterances
(one job per split of the keys, e.g. from run.pl); ``--nj N`` does the split here, runs N
worker processes (``<output_dir>/split<N>/output.<j>``) and merges their outputs.
Decoding uses the LLM's ``generate`` with input embeddings (left-padded batch).
"""

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple



def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slm_train_config", required=True)
    p.add_argument("--slm_model_file", default=None)
    p.add_argument(
        "--data_path_and_name_and_type", action="append", required=True,
        type=lambda s: tuple(s.split(",")), help="path,name,type as in ESPnet",
    )
    p.add_argument("--key_file", default=None)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--beam_size", type=int, default=1)
    p.add_argument("--max_new_tokens", type=int, default=None)
    p.add_argument("--length_penalty", type=float, default=1.0)
    p.add_argument("--repetition_penalty", type=float, default=1.0)
    p.add_argument("--nj", type=int, default=1, help="parallel worker processes")
    p.add_argument("--log_level", default="INFO")
    return p


class Speech2TextSLM:
    """Load a trained model and decode batches: ``hyps, reasons = s2t(batch)``."""

    def __init__(self, slm_train_config, slm_model_file=None, device="cpu"):
        from espnet_otreg.tasks.slm import SLMTask

        self.model, self.args = SLMTask.build_model_from_file(
            slm_train_config, slm_model_file, device
        )
        self.model.eval()
        self.device = device
        self.preprocess = SLMTask.build_preprocess_fn(self.args, False)
        self.collate = SLMTask.build_collate_fn(self.args, False)
        self.tokenizer = self.preprocess.tokenizer

    def __call__(self, batch, utt_id=None, **kw) -> Tuple[List[str], List[Optional[str]]]:
        batch = {k: v.to(self.device) for k, v in batch.items() if not k.startswith("text")}
        ids, reasons = self.model.generate(**batch, utt_id=utt_id, **kw)
        texts = [
            " ".join(self.tokenizer.decode(h, skip_special_tokens=True).split()) for h in ids
        ]
        return texts, reasons


def read_keys(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]


def decode(args) -> None:
    from espnet_otreg.tasks.slm import SLMTask

    device = "cuda" if args.ngpu > 0 else "cpu"
    s2t = Speech2TextSLM(args.slm_train_config, args.slm_model_file, device)
    loader = SLMTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        preprocess_fn=s2t.preprocess,
        collate_fn=s2t.collate,
        key_file=args.key_file,
        batch_size=args.batch_size,
        dtype="float32",
        num_workers=args.num_workers,
        allow_variable_data_keys=True,
        ngpu=args.ngpu,
        inference=True,
    )
    out, skipped = {}, {}
    start, n = time.perf_counter(), 0
    for i, (keys, batch) in enumerate(loader, 1):
        texts, reasons = s2t(
            batch, utt_id=keys, beam_size=args.beam_size,
            max_new_tokens=args.max_new_tokens, length_penalty=args.length_penalty,
            repetition_penalty=args.repetition_penalty,
        )
        for k, t, r in zip(keys, texts, reasons):
            out[k] = t
            if r is not None:
                skipped[k] = r
        n += len(keys)
        if i % 10 == 0:
            logging.info(f"decoded {n} utterances ({n / (time.perf_counter() - start):.2f}/s)")
    write_outputs(Path(args.output_dir), out, skipped)
    logging.info(f"decoded {n} utterances, {len(skipped)} skipped -> {args.output_dir}/text")


def write_outputs(out_dir: Path, texts: dict, skipped: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "text", "w", encoding="utf-8") as f:
        for k in sorted(texts):
            f.write(f"{k} {texts[k]}".rstrip() + "\n")
    with open(out_dir / "skipped", "w", encoding="utf-8") as f:
        for k in sorted(skipped):
            f.write(f"{k} {skipped[k]}\n")


def run_parallel(args, argv: Sequence[str]) -> None:
    """Split the keys into ``nj`` files, decode each in a worker, merge the outputs."""
    out_dir = Path(args.output_dir)
    keys = read_keys(args.key_file or args.data_path_and_name_and_type[0][0])
    nj = min(args.nj, len(keys))
    split = out_dir / f"split{nj}"
    split.mkdir(parents=True, exist_ok=True)
    base = []
    skip = False
    for a in argv:  # drop --nj/--key_file/--output_dir (and their values) from argv
        if skip:
            skip = False
            continue
        if a in ("--nj", "--key_file", "--output_dir"):
            skip = True
            continue
        if a.split("=")[0] in ("--nj", "--key_file", "--output_dir"):
            continue
        base.append(a)
    procs = []
    for j in range(1, nj + 1):
        kf = split / f"keys.{j}.scp"
        kf.write_text("".join(f"{k}\n" for k in keys[j - 1 :: nj]), encoding="utf-8")
        cmd = [sys.executable, "-m", "espnet_otreg.bin.slm_inference", *base,
               "--key_file", str(kf), "--output_dir", str(split / f"output.{j}"), "--nj", "1"]
        log = open(split / f"decode.{j}.log", "w")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log, j))
    failed = []
    for proc, log, j in procs:
        proc.wait()
        log.close()
        if proc.returncode != 0:
            failed.append(j)
    if failed:
        raise RuntimeError(f"decoding jobs {failed} failed: see {split}/decode.<j>.log")
    texts, skipped = {}, {}
    for j in range(1, nj + 1):
        for name, d in (("text", texts), ("skipped", skipped)):
            for line in (split / f"output.{j}" / name).read_text(encoding="utf-8").splitlines():
                k, _, v = line.partition(" ")
                d[k] = v
    write_outputs(out_dir, texts, skipped)
    logging.info(f"merged {nj} jobs: {len(texts)} utterances -> {out_dir}/text")


def main(cmd=None):
    argv = list(sys.argv[1:] if cmd is None else cmd)
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if args.nj > 1:
        run_parallel(args, argv)
    else:
        decode(args)


if __name__ == "__main__":
    main()
