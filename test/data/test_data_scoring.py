"""espnet_otreg.data.scoring: sclite-weighted alignment, trn/result files."""

import os
import random

import pytest

from espnet_otreg.data.datadir import DataDirError, write_kv
from espnet_otreg.data.scoring import align, char_tokens, parse_result, sclite_available, score


def test_align_counts_by_hand():
    c = align(list("abcd"), list("abcd"))
    assert (c.corr, c.sub, c.dele, c.ins, c.n_snt_err) == (4, 0, 0, 0, 0)
    c = align(list("abcd"), list("axcd"))
    assert (c.corr, c.sub, c.dele, c.ins) == (3, 1, 0, 0)
    c = align(list("abcd"), list("abd"))
    assert (c.corr, c.sub, c.dele, c.ins) == (3, 0, 1, 0)
    c = align(list("abc"), list("abxc"))
    assert (c.corr, c.sub, c.dele, c.ins) == (3, 0, 0, 1)
    c = align(list("abc"), [])
    assert (c.corr, c.sub, c.dele, c.ins) == (0, 0, 3, 0)
    c = align([], list("ab"))
    assert (c.n_ref, c.ins) == (0, 2)


def test_align_total_close_to_levenshtein_on_random_pairs():
    """sclite's weights (sub 4, ins/del 3) minimise a weighted cost, so the error total
    can exceed plain edit distance (jiwer), never undercut it, and only rarely differs:
    here 1 edit in 1135 on fully random pairs."""
    import jiwer

    rng = random.Random(0)
    refs, hyps, total = [], [], 0
    for _ in range(200):
        r = [rng.choice("abcdef") for _ in range(rng.randint(1, 10))]
        h = [rng.choice("abcdef") for _ in range(rng.randint(0, 10))]
        c = align(r, h)
        assert c.n_ref == len(r) and c.corr + c.sub + c.ins == len(h)
        total += c.sub + c.dele + c.ins
        refs.append(" ".join(r))
        hyps.append(" ".join(h) if h else "")
    out = jiwer.process_words([r for r, h in zip(refs, hyps) if h],
                              [h for h in hyps if h])
    empty = sum(len(r.split()) for r, h in zip(refs, hyps) if not h)
    lev = out.substitutions + out.deletions + out.insertions + empty
    assert lev <= total <= lev * 1.005


def _files(tmp_path, ref, hyp):
    write_kv(tmp_path / "ref", ref)
    write_kv(tmp_path / "hyp", hyp)
    write_kv(tmp_path / "utt2spk", {u: u[:2] for u in ref})


def test_score_python_writes_espnet_files(tmp_path):
    _files(tmp_path, {"s1a": "我是学生", "s1b": "你好", "s2a": "中国人"},
           {"s1a": "我是学", "s1b": "你好", "s2a": "中国大人"})
    r = score(tmp_path / "ref", tmp_path / "hyp", tmp_path / "utt2spk", tmp_path / "o",
              backend="python")
    # 9 reference characters; 1 deletion + 1 insertion.
    assert (r["n_snt"], r["n_wrd"]) == (3, 9)
    assert r["err"] == pytest.approx(round(200 / 9, 1))
    assert r["snt_err"] == pytest.approx(66.7)
    trn = (tmp_path / "o" / "ref.trn").read_text(encoding="utf-8").splitlines()
    assert trn[0] == "我 是 学 生\t(s1-s1a)"
    assert parse_result(tmp_path / "o" / "result.txt")["err"] == r["err"]
    assert (r["n_corr"], r["n_sub"], r["n_del"], r["n_ins"]) == (8, 0, 1, 1)
    assert r["cer"] == pytest.approx(200 / 9)
    assert char_tokens("a b") == ["a", "<space>", "b"]


def test_score_missing_hypothesis_names_it(tmp_path):
    _files(tmp_path, {"u1": "你好", "u2": "好"}, {"u1": "你好"})
    with pytest.raises(DataDirError, match=r"no hypothesis for 1 .*'u2'"):
        score(tmp_path / "ref", tmp_path / "hyp", None, tmp_path / "o", backend="python")


@pytest.mark.skipif(not sclite_available() and not os.environ.get("ESPNET_OTREG_REQUIRE_SCLITE"),
                    reason="sclite (Debian package sctk) not installed")
def test_python_scorer_equals_sclite(tmp_path):
    rng = random.Random(1)
    ref, hyp = {}, {}
    for i in range(150):
        r = "".join(rng.choice("我你他是的在有") for _ in range(rng.randint(1, 12)))
        h = list(r)
        for _ in range(rng.randint(0, 5)):
            p = rng.randint(0, max(len(h) - 1, 0))
            op = rng.random()
            if op < 0.3 and h:
                h.pop(p)
            elif op < 0.6:
                h.insert(p, rng.choice("我你他是的在有"))
            elif h:
                h[p] = rng.choice("我你他是的在有")
        ref[f"S{i % 5}U{i:03d}"], hyp[f"S{i % 5}U{i:03d}"] = r, "".join(h)
    _files(tmp_path, ref, hyp)
    a = score(tmp_path / "ref", tmp_path / "hyp", tmp_path / "utt2spk", tmp_path / "sc", "sclite")
    b = score(tmp_path / "ref", tmp_path / "hyp", tmp_path / "utt2spk", tmp_path / "py", "python")
    a.pop("backend"), b.pop("backend")
    assert a == b and "n_sub" in a
