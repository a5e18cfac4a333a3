"""Plot GM-OT couplings gamma* of a trained model for chosen utterances (PNG).

One image per utterance: encoder frames on the x axis, teacher tokens on the y axis
(labelled with the transcript's characters when they match the teacher tokens one to
one, else with token positions), darker = more mass. A monotonic, near-diagonal band
is what the temporal prior (rho) aims for. The raw matrix is saved beside the image
as ``<utt_id>.npy``.

Example::

    python -m espnet_otreg.bin.plot_coupling \\
        --asr_train_config exp/asr_gmot/config.yaml \\
        --asr_model_file exp/asr_gmot/valid.cer_ctc.ave.pth \\
        --data_path_and_name_and_type dump/raw/dev/wav.scp,speech,sound \\
        --data_path_and_name_and_type dump/raw/dev/text,text,text \\
        --data_path_and_name_and_type dump/teacher/dev/feats.scp,teacher_feats,kaldi_ark \\
        --utt_ids BAC009S0724W0121,BAC009S0724W0122 --output_dir exp/asr_gmot/coupling
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import List, Sequence

import numpy as np


def plot(plan: np.ndarray, labels: Sequence[str], title: str, path: Path) -> None:
    """Save ``plan`` (frames x tokens) as a heat map with the tokens as y labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # A CJK-capable font when the system has one, so that Chinese labels render.
    names = {f.name for f in font_manager.fontManager.ttflist}
    cjk = [n for n in ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei",
                       "AR PL UMing CN", "SimHei") if n in names]
    if cjk:
        plt.rcParams["font.family"] = cjk[:1] + ["DejaVu Sans"]
    elif any(ord(c) >= 0x2E80 for label in labels for c in label):
        # DejaVu has no CJK glyphs: positions are more use than rows of boxes.
        logging.warning("no CJK font found (e.g. apt-get install fonts-wqy-zenhei, then "
                        "remove ~/.cache/matplotlib): tokens labelled by position")
        labels = [f"#{j}" for j in range(len(labels))]
    n, m = plan.shape
    fig, ax = plt.subplots(figsize=(min(16, 3 + n / 12), min(10, 2 + m / 3)))
    im = ax.imshow(plan.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest")
    ax.set_yticks(range(m))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("encoder frame")
    ax.set_ylabel("teacher token")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def token_labels(model, text, text_lengths, m: int) -> List[str]:
    """The teacher's own tokens (online teacher), else the transcript's tokens."""
    if model.teacher_source == "online" and model.teacher is not None:
        toks = model.teacher.tokenizer.tokenize(model.ids_to_texts(text, text_lengths)[0])
        if len(toks) == m:
            return toks
    chars = [model.token_list[i] for i in text[0, : int(text_lengths[0])].tolist()]
    return chars if len(chars) == m else [f"#{j}" for j in range(m)]


def run(args) -> List[Path]:
    from espnet_otreg.tasks.asr import GMOTASRTask

    device = "cuda" if args.ngpu > 0 else "cpu"
    model, train_args = GMOTASRTask.build_model_from_file(
        args.asr_train_config, args.asr_model_file, device
    )
    if type(model).__name__ != "ESPnetGMOTModel":
        raise ValueError(f"{args.asr_train_config} is not a GM-OT model (model: gmot)")
    model.eval()
    wanted = [u for u in args.utt_ids.split(",") if u]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False) as f:
        f.write("".join(f"{u}\n" for u in wanted))
        key_file = f.name
    loader = GMOTASRTask.build_streaming_iterator(
        [tuple(x.rsplit(",", 2)) for x in args.data_path_and_name_and_type],
        dtype="float32",
        batch_size=1,
        key_file=key_file,
        num_workers=0,
        preprocess_fn=GMOTASRTask.build_preprocess_fn(train_args, False),
        collate_fn=GMOTASRTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=True,
        inference=False,
    )
    written = []
    for keys, batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        plan, n_frames, n_tokens = model.coupling(**batch, utt_id=keys)
        n, m = int(n_frames[0]), int(n_tokens[0])
        p = plan[0, :n, :m].float().cpu().numpy()
        labels = token_labels(model, batch["text"], batch["text_lengths"], m)
        png = args.output_dir / f"{keys[0]}.png"
        np.save(args.output_dir / f"{keys[0]}.npy", p)
        g = model.gmot
        plot(p, labels, f"{keys[0]}  alpha={g.alpha} rho={g.rho} eps={g.epsilon} ws={g.ws}", png)
        logging.info("wrote %s", png)
        written.append(png)
    missing = set(wanted) - {p.stem for p in written}
    if missing:
        raise ValueError(f"utterances not found in the data: {sorted(missing)}")
    return written


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--asr_train_config", type=Path, required=True)
    p.add_argument("--asr_model_file", type=Path, required=True)
    p.add_argument("--data_path_and_name_and_type", action="append", required=True,
                   help="path,name,type as in asr_inference (speech, text, teacher_feats)")
    p.add_argument("--utt_ids", required=True, help="comma-separated utterance ids")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--ngpu", type=int, default=0)
    return p


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run(args)
    except ValueError as e:
        sys.exit(f"plot_coupling: {e}")


if __name__ == "__main__":
    main()
