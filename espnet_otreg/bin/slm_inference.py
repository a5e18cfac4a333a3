#!/usr/bin/env python3
"""Batched greedy / beam decoding with a trained OTReg speech-LLM.

::

    python -m espnet_otreg.bin.slm_inference \\
        --slm_train_config exp/slm/config.yaml --slm_model_file exp/slm/valid.acc.ave.pth \\
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound \\
        --data_path_and_name_and_type dump/raw/test/utt2lang,lang,text \\
        --output_dir exp/slm/decode_test --batch_size 8 --ngpu 1 [--config conf/decode_slm.yaml]

``--config`` reads decoding options from YAML (``beam_size: 4``, ``max_new_tokens:
null``), as ``espnet2.bin.asr_inference`` does; options on the command line win.

Writes ``<output_dir>/text`` (``<utt_id> <hypothesis>``, sorted by utterance id, like
ESPnet's ``1best_recog/text``) and ``<output_dir>/skipped`` (``<utt_id> <reason>``) for
utterances that cannot be decoded (audio shorter than one projector step, prompt longer
than the LLM context); they get an empty hypothesis, so scoring counts them as deletions.

Parallel jobs as in ESPnet: ``--key_file`` restricts decoding to the listed utterances;
the recipe (stage 12) splits the keys, runs one job per split and merges the outputs.
Decoding uses the LLM's ``generate`` with input embeddings (left-padded batch).
"""

import argparse
import logging
import time
from pathlib import Path
from typing import List, Optional, Tuple



def get_parser() -> argparse.ArgumentParser:
    # ESPnet's parser, as espnet2.bin.asr_inference's: --config decode.yaml sets any of
    # these options (YAML keys = option names; null is None), the command line wins.
    from espnet2.utils import config_argparse
    from espnet2.utils.types import int_or_none

    p = config_argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    p.add_argument("--max_new_tokens", type=int_or_none, default=None)
    p.add_argument("--length_penalty", type=float, default=1.0)
    p.add_argument("--repetition_penalty", type=float, default=1.0)
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


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    decode(args)


if __name__ == "__main__":
    main()
