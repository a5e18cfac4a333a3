#!/usr/bin/env python3
"""Pre-train a small character BERT by masked LM: a teacher that knows the language.

GM-OT (arXiv 2505.13079) distils a pretrained Chinese BERT. For the small controlled
experiment (docs/experiments.md) the teacher must know the corpus's language without a
Hub download, so we pre-train one on other sentences of the same text
(``teacher_text.txt`` of ``local/make_tts_corpus.py``; none of them is in the corpus)
and save it with ``save_pretrained``; ``model_conf.teacher: <out>`` loads it through
the same ``from_pretrained`` code as ``bert-base-chinese``.

::

    python local/pretrain_teacher.py --text tts_corpus/teacher_text.txt --out tts_corpus/teacher

Vocabulary: BERT's five special tokens and every character of the text (the corpus is
written in those characters). Masking as in BERT: 15 % of the characters, of which 80 %
become [MASK], 10 % a random character, 10 % stay. The last ``--heldout`` sentences are
not trained on (or the sentences of ``--heldout_text``, so that teachers trained on
different text are measured on the same sentences). On them, every epoch, we log the
masked-character accuracy and perplexity (``exp`` of the mean cross-entropy at the
masked positions), and write them to ``<out>/pretrain.json`` next to what a unigram
model of the training text scores on the same positions: a teacher near unigram level
knows the character frequencies and nothing else.

``--epochs 0`` saves the random initialisation: the untrained control of the teacher-
strength study (docs/experiments.md), same architecture, no knowledge.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from espnet_otreg.data.text_corpora import read_sentences as read_lines

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def encode(sents, stoi, max_len):
    ids = torch.zeros(len(sents), max_len + 2, dtype=torch.long)  # [PAD] = 0
    for i, s in enumerate(sents):
        row = [stoi["[CLS]"]] + [stoi.get(c, stoi["[UNK]"]) for c in s[:max_len]] + [stoi["[SEP]"]]
        ids[i, : len(row)] = torch.tensor(row)
    return ids


def mask_tokens(ids, vocab_size, gen, p=0.15):
    """BERT's masking; labels are -100 where nothing is predicted."""
    real = ids >= len(SPECIAL)
    chosen = (torch.rand(ids.shape, generator=gen) < p) & real
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=gen)
    inputs = ids.clone()
    inputs[chosen & (r < 0.8)] = SPECIAL.index("[MASK]")
    rand = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rand] = torch.randint(len(SPECIAL), vocab_size, (int(rand.sum()),), generator=gen)
    return inputs, labels


@torch.no_grad()
def heldout_scores(model, ids, vocab_size, log_unigram, seed=123, batch_size=256):
    """Masked-character accuracy and perplexity of ``model`` and of the unigram model
    ``log_unigram`` (log-probabilities over the vocabulary) on the same masked
    positions (a fixed mask, so every epoch and every teacher sees the same ones)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    inputs, labels = mask_tokens(ids, vocab_size, gen)
    hits = nll = n = 0.0
    for i in range(0, len(ids), batch_size):
        x, y = inputs[i : i + batch_size], labels[i : i + batch_size]
        logits = model(input_ids=x, attention_mask=(ids[i : i + batch_size] > 0).long()).logits
        on = y != -100
        hits += float((logits.argmax(-1)[on] == y[on]).sum())
        nll += float(torch.nn.functional.cross_entropy(logits[on], y[on], reduction="sum"))
        n += float(on.sum())
    model.train()
    on = labels != -100
    y = labels[on]
    return dict(
        mlm_acc=hits / n, mlm_ppl=float(torch.exp(torch.tensor(nll / n))),
        unigram_acc=float((y == log_unigram.argmax()).float().mean()),
        unigram_ppl=float(torch.exp(-log_unigram[y].mean())),
    )


def unigram(ids, vocab_size):
    """Add-one log-probabilities of the real characters of ``ids`` (specials get none)."""
    counts = torch.bincount(ids[ids >= len(SPECIAL)], minlength=vocab_size).double() + 1.0
    counts[: len(SPECIAL)] = 0.0
    return (counts / counts.sum()).log()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, required=True, help="one sentence per line")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hidden_size", type=int, default=128)
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--num_heads", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--max_len", type=int, default=32)
    p.add_argument("--heldout", type=int, default=300,
                   help="the last N sentences of --text are held out")
    p.add_argument("--heldout_text", type=Path, default=None,
                   help="held-out sentences (then all of --text is trained on)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log_every", type=int, default=500, help="log the loss every N batches")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    if (args.out / "config.json").is_file():
        logging.info(f"{args.out}: teacher exists, keeping it")
        return
    sents = read_lines(args.text)
    if args.heldout_text is not None:
        train, heldout = sents, read_lines(args.heldout_text)
    else:
        train, heldout = sents[: -args.heldout], sents[-args.heldout :]
    chars = sorted({c for s in train + heldout for c in s})
    stoi = {t: i for i, t in enumerate(SPECIAL + chars)}
    V = len(stoi)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    cfg = BertConfig(vocab_size=V, hidden_size=args.hidden_size,
                     num_hidden_layers=args.num_layers, num_attention_heads=args.num_heads,
                     intermediate_size=4 * args.hidden_size, max_position_embeddings=128)
    model = BertForMaskedLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    ids, held = encode(train, stoi, args.max_len), encode(heldout, stoi, args.max_len)
    log_unigram = unigram(ids, V)
    n_batches = (len(ids) + args.batch_size - 1) // args.batch_size
    steps = args.epochs * n_batches
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
             if steps else None)
    history, t0 = [], time.time()
    logging.info(f"MLM on {len(train)} sentences, {V} tokens; held out {len(heldout)}; "
                 f"chance {1 / (V - len(SPECIAL)):.4f}")
    if args.epochs == 0:
        history.append(dict(epoch=0, train_loss=None, **heldout_scores(model, held, V, log_unigram)))
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(ids), generator=gen)
        total = 0.0
        for i in range(0, len(ids), args.batch_size):
            batch = ids[perm[i : i + args.batch_size]]
            inputs, labels = mask_tokens(batch, V, gen)
            # Drop the columns that are padding in every row (masked on the full width,
            # so the random stream does not depend on the batch's lengths).
            width = int((batch > 0).sum(1).max())
            batch, inputs, labels = (t[:, :width].contiguous() for t in (batch, inputs, labels))
            if not (labels != -100).any():  # nothing masked (tiny texts): the loss is 0/0
                continue
            loss = model(input_ids=inputs, attention_mask=(batch > 0).long(), labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch)
            step = i // args.batch_size + 1
            if step % args.log_every == 0:  # an epoch of a large text takes minutes
                logging.info(f"epoch {epoch}: batch {step}/{n_batches}, loss {loss.item():.3f} "
                             f"({time.time() - t0:.0f} s)")
        scores = heldout_scores(model, held, V, log_unigram)
        history.append(dict(epoch=epoch, train_loss=total / len(ids), **scores))
        logging.info(f"epoch {epoch}: train loss {total / len(ids):.3f}, held-out masked "
                     f"accuracy {scores['mlm_acc']:.3f}, perplexity {scores['mlm_ppl']:.1f} "
                     f"(unigram {scores['unigram_acc']:.3f}, {scores['unigram_ppl']:.1f}) "
                     f"({time.time() - t0:.0f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocab.txt").write_text("\n".join(SPECIAL + chars) + "\n", encoding="utf-8")
    BertTokenizer(str(args.out / "vocab.txt"), do_lower_case=False).save_pretrained(args.out)
    model.bert.save_pretrained(args.out)  # the encoder, what AutoModel loads
    paths = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "pretrain.json").write_text(json.dumps(dict(
        paths, vocab_size=V, train_sentences=len(train), heldout_sentences=len(heldout),
        chance=1 / (V - len(SPECIAL)), final=history[-1], history=history), indent=1) + "\n")
    logging.info(f"teacher -> {args.out}")


if __name__ == "__main__":
    main()
