"""local/pretrain_teacher.py of the GM-OT recipe at toy size: the teacher is saved where
``from_pretrained`` finds it, the training loss stays finite when a batch has no masked
character (tiny texts), and long epochs log their progress."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "egs2/aishell_gmot/asr1"


def test_pretrain_teacher_tiny_text(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("我们是学生\n你好中国人\n他很好看书\n大家上学去\n" * 5, encoding="utf-8")
    out = tmp_path / "teacher"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(RECIPE.parents[2]))
    proc = subprocess.run(
        [sys.executable, str(RECIPE / "local/pretrain_teacher.py"), "--text", str(text),
         "--out", str(out), "--hidden_size", "16", "--num_layers", "1", "--num_heads", "2",
         "--epochs", "2", "--batch_size", "2", "--heldout", "4", "--log_every", "3"],
        env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1: batch 3/8" in proc.stderr and "epoch 2: batch 6/8" in proc.stderr
    report = json.loads((out / "pretrain.json").read_text())
    assert [h["epoch"] for h in report["history"]] == [1, 2]
    assert all(math.isfinite(h["train_loss"]) for h in report["history"])
    assert report["train_sentences"] == 16 and report["vocab_size"] == 5 + 18  # 18 distinct characters

    from transformers import AutoModel, AutoTokenizer
    model, tok = AutoModel.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.config.hidden_size == 16 and tok.convert_tokens_to_ids("学") >= 5
