#!/usr/bin/env python3
"""Pre-train a small character-level causal LM: an LLM that knows the language.

OTReg (arXiv 2508.08131) aligns a speech encoder with a pre-trained LLM's embeddings.
For a controlled experiment on a CPU the LLM must know the language of the transcripts
without a Hub download, so we pre-train one from scratch on text (one sentence per line)
and save it, with its own tokenizer, by ``save_pretrained``; ``llm_conf:
{model_name_or_path: <out>}`` loads it through the same code as a real LLM.

::

    python local/pretrain_llm.py --text lm/train.txt --out lm/char_qwen2 \\
        --heldout review=lm/heldout_review.txt --heldout dialogue=lm/heldout_dialogue.txt

Model: ``espnet_otreg.slm.char_lm`` (a Qwen2 of ``--num_layers`` x ``--hidden_size``, one
token per character of the training and held-out text, a pad token of its own). Each
training sentence is ``<chars> <eos>``, next-token cross-entropy on every position.
After every epoch each ``--heldout NAME=FILE`` set (sentences never trained on; the
script stops if one is in the training text, by exact match) is scored by perplexity
per predicted token (characters and eos), next to an add-one unigram model of the
training text on the same tokens: an LLM near unigram level would make an OTReg
experiment uninformative. ``--epochs 0`` saves the random initialisation: the
"untrained LLM of the same shape" control. Everything goes to ``<out>/pretrain.json``.

**Reading examples** (``--reading_fraction F``, our choice, not the paper's): a
billion-parameter LLM can read text placed in its context and write it out; a 5 M LM
trained on single sentences cannot, so the SLM built on it learns to ignore its speech
(docs/experiments.md, the untrained-LM control). With ``F > 0`` a fraction F of the
training sentences (drawn anew each epoch) become an SLM-shaped example
``<template before {speech}> <rendering> <template after> <sentence> <eos>`` with the
cross-entropy on the sentence and eos only, as in the SLM. The rendering stands in for
speech embeddings that look like text: each character, replaced with probability
``--reading_substitute`` by a homophone (another character of the vocabulary with the
same toneless syllable: the speech carries syllables only), repeated
``--reading_repeat LO,HI`` times and followed by ``--reading_blanks LO,HI`` pad tokens
(the CTC blank and the OTReg blank anchor are both the pad embedding), so about five
positions per character, as the SLM's 12.5 Hz speech embeddings have. Each held-out
domain is then also scored as reading examples (``reading_ppl`` next to its
``ppl``, one fixed rendering): the perplexity of the sentence given its rendering, which shows whether the
LM reads its context.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from espnet_otreg.data.text_corpora import read_sentences as read_lines
from espnet_otreg.slm.char_lm import build_causal_lm, build_char_tokenizer


def encode(tokenizer, sents: List[str], max_len: int) -> torch.Tensor:
    """``(S, L)`` ids: each sentence's characters (at most ``max_len``) then eos, padded
    with the pad id."""
    rows = [tokenizer(s[:max_len], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            for s in sents]
    ids = torch.full((len(rows), max(map(len, rows))), tokenizer.pad_token_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids


def unigram(ids: torch.Tensor, vocab_size: int, pad_id: int) -> torch.Tensor:
    """Add-one log-probabilities of the tokens of ``ids`` (characters and eos; pad none)."""
    counts = torch.bincount(ids[ids != pad_id], minlength=vocab_size).double() + 1.0
    counts[pad_id] = 0.0
    return (counts / counts.sum()).log()


def sum_nll(model, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> Tuple[float, float]:
    """Summed next-token negative log-likelihood over the labelled positions (labels
    not -100) of one batch, and how many there are."""
    logits = model(input_ids=x, attention_mask=mask).logits[:, :-1]
    y = labels[:, 1:]
    on = y != -100
    return (float(torch.nn.functional.cross_entropy(logits[on].float(), y[on], reduction="sum")),
            float(on.sum()))


@torch.no_grad()
def perplexity(model, ids: torch.Tensor, pad_id: int, log_unigram: torch.Tensor,
               batch_size: int = 128) -> Dict[str, float]:
    """Perplexity per predicted token of ``model`` and of the unigram model on ``ids``
    (every real token after the first of a sentence: what the LM predicts)."""
    model.eval()
    nll = n = 0.0
    for i in range(0, len(ids), batch_size):
        x = ids[i : i + batch_size]
        labels = torch.where(x == pad_id, torch.full_like(x, -100), x)
        b_nll, b_n = sum_nll(model, x, labels, (x != pad_id).long())
        nll, n = nll + b_nll, n + b_n
    model.train()
    y = ids[:, 1:][ids[:, 1:] != pad_id]
    return dict(ppl=math.exp(nll / n), unigram_ppl=math.exp(-float(log_unigram[y].mean())),
                tokens=int(n))


class Reader:
    """Reading examples: ``[before] [rendering] [after] [sentence] [eos]`` as token ids
    and labels (-100 but on the sentence and eos); see the module docstring."""

    def __init__(self, tokenizer, template: str, substitute: float,
                 repeat: Tuple[int, int], blanks: Tuple[int, int], max_chars: int):
        from espnet_otreg.data.pinyin import syllables

        if template.count("{speech}") != 1:
            raise ValueError(f"--reading_template needs one {{speech}}, got {template!r}")
        before, after = template.split("{speech}")
        self.tok = tokenizer
        self.before, self.after = self.ids(before), self.ids(after)
        self.pad, self.eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        self.substitute, self.repeat, self.blanks = substitute, repeat, blanks
        self.max_chars = max_chars
        # homophones among the vocabulary's single-character tokens (CJK only)
        by_syllable: Dict[str, List[int]] = {}
        for token, i in tokenizer.get_vocab().items():
            c = tokenizer.convert_tokens_to_string([token])
            if len(c) == 1 and "\u4e00" <= c <= "\u9fff":
                by_syllable.setdefault(syllables(c, strict=False)[0], []).append(i)
        self.homophones = {i: sorted(set(group) - {i}) for group in by_syllable.values()
                           for i in group if len(group) > 1}

    def ids(self, text: str) -> List[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def render(self, chars: List[int], gen: torch.Generator) -> List[int]:
        """The stand-in for speech embeddings: homophones, repeats, blanks."""
        out = []
        draws = torch.rand(len(chars), generator=gen).tolist()
        for c, u in zip(chars, draws):
            alts = self.homophones.get(c)
            if alts and u < self.substitute:
                c = alts[int(torch.randint(len(alts), (1,), generator=gen))]
            out += [c] * int(torch.randint(self.repeat[0], self.repeat[1] + 1, (1,), generator=gen))
            out += [self.pad] * int(torch.randint(self.blanks[0], self.blanks[1] + 1, (1,),
                                                  generator=gen))
        return out

    def example(self, sentence: str, gen: torch.Generator) -> Tuple[List[int], List[int]]:
        """(ids, labels) of one reading example."""
        chars = self.ids(sentence[: self.max_chars])
        prefix = self.before + self.render(chars, gen) + self.after
        return prefix + chars + [self.eos], [-100] * len(prefix) + chars + [self.eos]


def batch(rows: List[Tuple[List[int], List[int]]], pad: int
          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(ids, labels, attention_mask)`` of (ids, labels) rows. The mask
    comes from the lengths, not from ``ids != pad``: a reading example has pad tokens
    (blanks) inside it."""
    L = max(len(r) for r, _ in rows)
    ids = torch.full((len(rows), L), pad, dtype=torch.long)
    labels = torch.full((len(rows), L), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (r, y) in enumerate(rows):
        ids[i, : len(r)], labels[i, : len(y)], mask[i, : len(r)] = torch.tensor(r), torch.tensor(y), 1
    return ids, labels, mask


@torch.no_grad()
def reading_perplexity(model, reader: Reader, sents: List[str], seed: int,
                       batch_size: int = 64) -> Dict[str, float]:
    """Perplexity per sentence token (characters and eos) given one fixed rendering."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    rows = [reader.example(s, gen) for s in sents]
    nll = n = 0.0
    for i in range(0, len(rows), batch_size):
        b_nll, b_n = sum_nll(model, *batch(rows[i : i + batch_size], reader.pad))
        nll, n = nll + b_nll, n + b_n
    model.train()
    return dict(ppl=math.exp(nll / n), tokens=int(n))


def reading_batches(reader: Reader, sents: List[str], ids: torch.Tensor, order: List[int],
                    fraction: float, batch_size: int, gen: torch.Generator,
                    bucket: int = 50) -> List[List[Tuple[List[int], List[int]]]]:
    """One epoch of (ids, labels) rows in batches: each sentence, in ``order``, a reading
    example with probability ``fraction``, else plain. A reading example is about six
    times longer than a sentence, so rows are batched with others of similar length
    (sorted within chunks of ``bucket`` batches, the batches then shuffled): padding
    every row to the longest reading example of a batch made an epoch six times slower."""
    pad = reader.pad
    reading = (torch.rand(len(order), generator=gen) < fraction).tolist()
    rows = []
    for j, r in zip(order, reading):
        plain = ids[j][ids[j] != pad].tolist()
        rows.append(reader.example(sents[j], gen) if r else (plain, plain))
    batches = []
    chunk = batch_size * bucket
    for c in range(0, len(rows), chunk):
        part = sorted(rows[c : c + chunk], key=lambda row: len(row[0]))
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def span(spec: str, name: str) -> Tuple[int, int]:
    """``"LO,HI"`` -> (LO, HI) with 0 <= LO <= HI."""
    try:
        lo, hi = (int(v) for v in spec.split(","))
    except ValueError:
        raise SystemExit(f"pretrain_llm.py: {name} takes LO,HI (two integers), got {spec!r}")
    if not 0 <= lo <= hi:
        raise SystemExit(f"pretrain_llm.py: {name} needs 0 <= LO <= HI, got {spec!r}")
    return lo, hi


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, nargs="+", required=True,
                   help="training text, one sentence per line (several files: all of them)")
    p.add_argument("--heldout", action="append", default=[], metavar="NAME=FILE",
                   help="a held-out text domain, scored every epoch (repeatable)")
    p.add_argument("--vocab_text", type=Path, nargs="*", default=[],
                   help="more text whose characters get a token (not trained on): e.g. "
                        "the speech sets, so that a character only dev/test has is one "
                        "token, as in a real LLM's vocabulary")
    p.add_argument("--extra_chars", default="",
                   help="characters the vocabulary must have besides the text's (e.g. "
                        "those of the prompt)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_layers", type=int, default=4)
    p.add_argument("--num_heads", type=int, default=4)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max_len", type=int, default=64, help="characters per sentence at most")
    p.add_argument("--context", type=int, default=512, help="the LM's context length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log_every", type=int, default=200, help="steps between progress logs")
    p.add_argument("--reading_fraction", type=float, default=0.0,
                   help="fraction of training sentences given as reading examples (see above)")
    p.add_argument("--reading_template", default="语音：{speech}\n文字：",
                   help="the SLM's prompt template (conf/otreg/*.yaml prompt_conf)")
    p.add_argument("--reading_substitute", type=float, default=0.3,
                   help="probability a rendered character is replaced by a homophone")
    p.add_argument("--reading_repeat", default="1,2", help="repeats per rendered character, LO,HI")
    p.add_argument("--reading_blanks", default="2,5", help="pad tokens after each, LO,HI")
    args = p.parse_args(argv)
    if not 0.0 <= args.reading_fraction <= 1.0:
        p.error(f"--reading_fraction must be in [0, 1], got {args.reading_fraction}")
    if not 0.0 <= args.reading_substitute <= 1.0:
        p.error(f"--reading_substitute must be in [0, 1], got {args.reading_substitute}")
    repeat = span(args.reading_repeat, "--reading_repeat")
    blanks = span(args.reading_blanks, "--reading_blanks")
    if repeat[0] < 1:
        p.error(f"--reading_repeat: every character at least once, got {args.reading_repeat}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if (args.out / "config.json").is_file():
        logging.info(f"{args.out}: LM exists, keeping it")
        return
    train = [s for f in args.text for s in read_lines(f)]
    heldout = {}
    for spec in args.heldout:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            p.error(f"--heldout must be NAME=FILE, got {spec!r}")
        heldout[name] = read_lines(Path(path))
        leaked = sorted(set(heldout[name]) & set(train))
        if leaked:
            raise SystemExit(f"pretrain_llm.py: {len(leaked)} sentences of held-out set "
                             f"'{name}' ({path}) are in the training text, e.g. {leaked[0]!r}")
    if not train:
        raise SystemExit(f"pretrain_llm.py: no sentence in {', '.join(map(str, args.text))}")
    chars = ("".join(train) + "".join("".join(v) for v in heldout.values())
             + "".join("".join(read_lines(f)) for f in args.vocab_text) + args.extra_chars
             + (args.reading_template.replace("{speech}", "") if args.reading_fraction else ""))
    tokenizer = build_char_tokenizer(chars, model_max_length=args.context)
    model = build_causal_lm(tokenizer, args.hidden_size, args.num_layers, args.num_heads,
                            num_kv_heads=args.num_heads // 2 if args.num_heads % 2 == 0
                            else args.num_heads,
                            max_position_embeddings=args.context, seed=args.seed)
    V, pad = len(tokenizer), tokenizer.pad_token_id
    ids = encode(tokenizer, train, args.max_len)
    held = {k: encode(tokenizer, v, args.max_len) for k, v in heldout.items()}
    log_unigram = unigram(ids, V, pad)
    n_params = sum(p.numel() for p in model.parameters())
    logging.info(f"causal LM on {len(train)} sentences, {V} tokens, {n_params / 1e6:.2f} M "
                 f"parameters; held out: {', '.join(f'{k} {len(v)}' for k, v in heldout.items())}")

    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * ((len(ids) + args.batch_size - 1) // args.batch_size)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
             if steps else None)

    reader = None
    if args.reading_fraction:
        # the longest sentence whose reading example fits the context
        per_char = 1 + repeat[1] + blanks[1]
        reader = Reader(tokenizer, args.reading_template, args.reading_substitute, repeat, blanks,
                        max_chars=min(args.max_len, (args.context - len(args.reading_template) - 1)
                                      // per_char))
        logging.info(f"reading examples: {args.reading_fraction:.0%} of the sentences, "
                     f"{len(reader.homophones)} characters with a homophone")

    def scores():
        out = {k: perplexity(model, v, pad, log_unigram) for k, v in held.items()}
        if reader:
            for k in held:
                out[k]["reading_ppl"] = reading_perplexity(model, reader, heldout[k], args.seed)["ppl"]
        return out

    history, t0 = [], time.time()
    if args.epochs == 0:
        history.append(dict(epoch=0, train_loss=None, heldout=scores()))
    model.train()
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(ids), generator=gen)
        if reader:
            batches = reading_batches(reader, train, ids, perm.tolist(), args.reading_fraction,
                                      args.batch_size, gen)
        else:  # a plain LM's batches stay as they were
            batches = (ids[perm[i : i + args.batch_size]] for i in range(0, len(ids), args.batch_size))
        total = n_tok = 0.0
        for step, b in enumerate(batches, 1):
            if reader:
                x, labels, mask = batch(b, pad)
            else:
                x = b[:, : int((b != pad).sum(1).max())]  # drop all-padding columns
                labels = torch.where(x == pad, torch.full_like(x, -100), x)
                mask = (x != pad).long()
            loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            k = float((labels[:, 1:] != -100).sum())
            total, n_tok = total + loss.item() * k, n_tok + k
            if step % args.log_every == 0:
                logging.info(f"epoch {epoch}, step {step}/{(len(ids) + args.batch_size - 1) // args.batch_size}: "
                             f"train loss {total / n_tok:.3f} ({time.time() - t0:.0f} s)")
        history.append(dict(epoch=epoch, train_loss=total / n_tok, heldout=scores()))
        logging.info(f"epoch {epoch}: train loss {total / n_tok:.3f}; held-out perplexity "
                     + ", ".join(f"{k} {v['ppl']:.1f} (unigram {v['unigram_ppl']:.1f}"
                                 + (f", reading {v['reading_ppl']:.1f}" if reader else "") + ")"
                                 for k, v in history[-1]["heldout"].items())
                     + f" ({time.time() - t0:.0f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    model.save_pretrained(args.out)
    conf = {k: ([str(x) for x in v] if k in ("text", "vocab_text") else
                str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "pretrain.json").write_text(json.dumps(dict(
        conf, vocab_size=V, parameters=n_params, train_sentences=len(train),
        heldout_sentences={k: len(v) for k, v in heldout.items()}, final=history[-1],
        history=history), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    logging.info(f"LM -> {args.out}")


if __name__ == "__main__":
    main()
