"""local/make_results.py: numbers only from scored exp dirs; "-" otherwise; published
numbers in their own, marked table."""

import os
import subprocess
import sys
from pathlib import Path

from espnet_otreg.data.datadir import write_kv
from espnet_otreg.data.scoring import score

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "aishell_gmot" / "asr1"


def test_make_results_from_exp(tmp_path):
    exp = tmp_path / "exp" / "asr_train_asr_gmot"
    d = exp / "decode_ctc_greedy_asr_model_valid.cer_ctc.ave" / "test"
    write_kv(tmp_path / "ref", {"u1": "我是学生", "u2": "你好"})
    write_kv(tmp_path / "hyp", {"u1": "我是学", "u2": "你好"})
    score(tmp_path / "ref", tmp_path / "hyp", None, d / "score_cer", backend="python")
    (exp / "config.yaml").write_text("config: conf/train_asr_gmot.yaml\n")
    out = tmp_path / "RESULTS.md"
    r = subprocess.run([sys.executable, RECIPE / "local" / "make_results.py", "--expdir",
                        tmp_path / "exp", "--conf_dir", RECIPE / "conf", "--out", out],
                       env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text(encoding="utf-8")
    gmot = [l for l in text.splitlines() if l.startswith("|GM-OT (alpha 0.02)|")]
    assert gmot == ["|GM-OT (alpha 0.02)|conf/train_asr_gmot.yaml|decode_ctc_greedy.yaml|"
                    f"{exp}/valid.cer_ctc.ave.pth|-|16.67|"]  # 1 deletion in 6 chars
    base = [l for l in text.splitlines() if l.startswith("|Conformer-CTC baseline|")]
    assert base[0].endswith("|-|-|-|-|")
    assert "|GM-OT paper: GM-OT *(published)*|-|4.04|" in text
    # published numbers never appear in our table
    ours = text.split("## Published")[0]
    assert "4.04" not in ours and "5.76" not in ours
