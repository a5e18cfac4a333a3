"""Error-rate scoring like ESPnet stage 13: ``sclite`` when installed, else Python.

ESPnet writes ``ref.trn``/``hyp.trn`` (one line per utterance: space-separated tokens,
then ``(<spk>-<utt>)``), runs ``sclite -r ref.trn trn -h hyp.trn trn -i rm -o all
stdout > result.txt`` and reads the ``Sum/Avg`` row. Without ``sclite`` we align every
utterance in Python with sclite's (NIST's) weights, so both give the same numbers:

    cost(correct) = 0, cost(substitution) = 4, cost(insertion) = cost(deletion) = 3,

minimising the total weight by dynamic programming. Ties are broken as sclite does in
its traceback (prefer correct/substitution, then deletion, then insertion); the
numbers equal sclite's (``test/data/test_data_scoring.py`` checks it when sclite is
installed). Plain Levenshtein (``jiwer``) weighs every edit 1 and minimises the total
count, so it can report slightly fewer errors than sclite (about 1 edit in 1000 on
random strings): that is why the reported numbers do not use it.

:func:`score` writes the same files as ESPnet (``ref.trn``, ``hyp.trn``,
``result.txt``) and returns the ``Sum/Avg`` numbers. The Python ``result.txt`` has the
same per-speaker summary table as sclite's (``SYSTEM SUMMARY PERCENTAGES by SPEAKER``)
so ESPnet's result parsers read either.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from espnet_otreg.data.datadir import DataDirError, read_kv

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)

SUB, INS, DEL = 4, 3, 3


@dataclass
class Counts:
    """Alignment counts. ``err`` = (sub + del + ins) / (corr + sub + del), percent."""

    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    n_snt: int = 0
    n_snt_err: int = 0

    @property
    def n_ref(self) -> int:
        return self.corr + self.sub + self.dele

    def add(self, other: "Counts") -> None:
        for k in ("corr", "sub", "dele", "ins", "n_snt", "n_snt_err"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def percentages(self) -> Dict[str, float]:
        """sclite's columns: Corr Sub Del Ins Err S.Err (percent)."""
        n = max(self.n_ref, 1)
        return {
            "corr": 100.0 * self.corr / n,
            "sub": 100.0 * self.sub / n,
            "del": 100.0 * self.dele / n,
            "ins": 100.0 * self.ins / n,
            "err": 100.0 * (self.sub + self.dele + self.ins) / n,
            "snt_err": 100.0 * self.n_snt_err / max(self.n_snt, 1),
        }


def align(ref: Sequence[str], hyp: Sequence[str]) -> Counts:
    """Minimum-weight alignment of token lists (weights in the module docstring)."""
    n, m = len(ref), len(hyp)
    # cost[i][j]: best weight aligning ref[:i] with hyp[:j].
    prev = [j * INS for j in range(m + 1)]
    back: List[List[int]] = [[2] * (m + 1)]  # 0 diag, 1 del (up), 2 ins (left)
    for i in range(1, n + 1):
        cur = [i * DEL] + [0] * m
        row = [1] + [0] * m
        r = ref[i - 1]
        for j in range(1, m + 1):
            d = prev[j - 1] + (0 if r == hyp[j - 1] else SUB)
            u = prev[j] + DEL
            left = cur[j - 1] + INS
            if d <= u and d <= left:
                cur[j], row[j] = d, 0
            elif u <= left:
                cur[j], row[j] = u, 1
            else:
                cur[j], row[j] = left, 2
        back.append(row)
        prev = cur
    c = Counts(n_snt=1)
    i, j = n, m
    while i > 0 or j > 0:
        op = back[i][j] if i > 0 else 2
        if op == 0:
            if ref[i - 1] == hyp[j - 1]:
                c.corr += 1
            else:
                c.sub += 1
            i, j = i - 1, j - 1
        elif op == 1:
            c.dele += 1
            i -= 1
        else:
            c.ins += 1
            j -= 1
    c.n_snt_err = int(c.sub + c.dele + c.ins > 0)
    return c


def char_tokens(text: str, space: str = "<space>") -> List[str]:
    """ESPnet's ``char`` tokenizer: one token per character, spaces as ``<space>``."""
    return [space if ch == " " else ch for ch in text.strip()]


def write_trn(path: PathLike, texts: Mapping[str, str], utt2spk: Mapping[str, str]) -> None:
    """ESPnet's trn file: ``<tokens> (<spk>-<utt>)`` per utterance, in ``texts`` order."""
    with open(path, "w", encoding="utf-8") as f:
        for utt, t in texts.items():
            f.write(f"{' '.join(char_tokens(t))}\t({utt2spk[utt]}-{utt})\n")


def sclite_path() -> Optional[str]:
    """``sclite`` on PATH, or Debian's ``sctk`` package location; None when absent."""
    found = shutil.which("sclite")
    if found:
        return found
    debian = "/usr/lib/sctk/bin/sclite"
    return debian if os.access(debian, os.X_OK) else None


def sclite_available() -> bool:
    return sclite_path() is not None


_SUM = re.compile(r"\|\s*Sum/Avg\s*\|\s*(\d+)\s+(\d+)\s*\|\s*([\d.]+)\s+([\d.]+)\s+"
                  r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\|")


_SCORES = re.compile(r"^Scores: \(#C #S #D #I\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)")


def parse_result(path: PathLike) -> Dict[str, float]:
    """The numbers of a ``result.txt`` (sclite's ``-o all`` or ours).

    From the ``Sum/Avg`` row (one decimal, as sclite prints them): ``n_snt``, ``n_wrd``,
    ``corr``, ``sub``, ``del``, ``ins``, ``err``, ``snt_err``. From the per-utterance
    ``Scores: (#C #S #D #I)`` lines, when present, the exact counts ``n_corr``,
    ``n_sub``, ``n_del``, ``n_ins`` and ``cer`` = 100 (S + D + I) / (C + S + D),
    unrounded (papers report two decimals).
    """
    out: Dict[str, float] = {}
    counts = [0, 0, 0, 0]
    n_scores = 0
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = _SUM.search(line)
        if m and not out:
            v = [float(x) for x in m.groups()]
            out = dict(n_snt=int(v[0]), n_wrd=int(v[1]), corr=v[2], sub=v[3],
                       **{"del": v[4]}, ins=v[5], err=v[6], snt_err=v[7])
        m = _SCORES.match(line)
        if m:
            n_scores += 1
            counts = [a + int(b) for a, b in zip(counts, m.groups())]
    if not out:
        raise ValueError(f"{path}: no Sum/Avg row")
    if n_scores:
        c, s_, d, i = counts
        out.update(n_corr=c, n_sub=s_, n_del=d, n_ins=i,
                   cer=100.0 * (s_ + d + i) / max(c + s_ + d, 1))
    return out


def score(
    ref_text: PathLike,
    hyp_text: PathLike,
    utt2spk: Optional[PathLike],
    out_dir: PathLike,
    backend: str = "auto",
) -> Dict[str, float]:
    """Score hypotheses against references, ESPnet style (character level).

    Args:
        ref_text, hyp_text: ``text`` files (``<utt> <transcript>``). Every reference
            needs a hypothesis line (an empty hypothesis is allowed: all deletions);
            a missing one stops with the utterance ids, as sclite would.
        utt2spk: speakers for the per-speaker table (None: each utterance alone).
        out_dir: gets ``ref.trn``, ``hyp.trn``, ``result.txt``.
        backend: ``sclite``, ``python`` or ``auto`` (sclite when on PATH).

    Returns the ``Sum/Avg`` numbers (see :func:`parse_result`) plus ``backend``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = read_kv(ref_text, allow_empty_value=True)
    hyp = read_kv(hyp_text, allow_empty_value=True)
    missing = [u for u in ref if u not in hyp]
    if missing:
        raise DataDirError(f"{hyp_text}: no hypothesis for {len(missing)} utterances "
                           f"of {ref_text}, e.g. {missing[:5]}")
    extra = [u for u in hyp if u not in ref]
    if extra:
        raise DataDirError(f"{hyp_text}: {len(extra)} hypotheses have no reference, "
                           f"e.g. {extra[:5]}")
    spk = read_kv(utt2spk) if utt2spk else {u: u for u in ref}
    write_trn(out / "ref.trn", ref, spk)
    write_trn(out / "hyp.trn", {u: hyp[u] for u in ref}, spk)
    if backend == "auto":
        backend = "sclite" if sclite_available() else "python"
    result = out / "result.txt"
    if backend == "sclite":
        with open(result, "w") as f:
            subprocess.run([sclite_path() or "sclite", "-r", str(out / "ref.trn"), "trn", "-h",
                            str(out / "hyp.trn"), "trn", "-i", "rm", "-o", "all", "stdout"],
                           stdout=f, check=True)
    elif backend == "python":
        per_spk: Dict[str, Counts] = {}
        per_utt = []
        for u, r in ref.items():
            c = align(char_tokens(r), char_tokens(hyp[u]))
            per_spk.setdefault(spk[u], Counts()).add(c)
            per_utt.append(f"id: ({spk[u]}-{u})\nScores: (#C #S #D #I) "
                           f"{c.corr} {c.sub} {c.dele} {c.ins}\n")
        result.write_text(summary_table(per_spk, str(out / "hyp.trn")) + "\n"
                          + "\n".join(per_utt), encoding="utf-8")
    else:
        raise ValueError(f"backend must be auto, sclite or python, not {backend!r}")
    nums = parse_result(result)
    nums["backend"] = backend
    return nums


def summary_table(per_spk: Mapping[str, Counts], title: str) -> str:
    """sclite's ``SYSTEM SUMMARY PERCENTAGES by SPEAKER`` table (same row format)."""
    total = Counts()
    for c in per_spk.values():
        total.add(c)
    width = 65
    lines = ["", "SYSTEM SUMMARY PERCENTAGES by SPEAKER".center(80), "",
             "        ," + "-" * width + ".", f"        |{title.center(width)}|",
             "        |" + "-" * width + "|",
             "        | SPKR    | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |",
             "        |---------+-------------+-----------------------------------------|"]

    def row(name: str, c: Counts) -> str:
        p = c.percentages()
        return (f"        | {name:<7} | {c.n_snt:5d} {c.n_ref:5d} | {p['corr']:5.1f} "
                f"{p['sub']:6.1f} {p['del']:6.1f} {p['ins']:6.1f} {p['err']:6.1f} "
                f"{p['snt_err']:6.1f} |")

    for name in sorted(per_spk):
        lines.append(row(name, per_spk[name]))
        lines.append("        |---------+-------------+-----------------------------------------|")
    lines[-1] = "        |" + "=" * width + "|"
    lines.append(row("Sum/Avg", total))
    lines.append("        |" + "=" * width + "|")
    lines.append("        `" + "-" * width + "'")
    lines.append("")
    lines.append("Scored by espnet_otreg.data.scoring (Python, sclite weights: sub 4, "
                 "ins 3, del 3).")
    return "\n".join(lines) + "\n"
