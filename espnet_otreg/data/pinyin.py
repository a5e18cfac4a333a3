"""Toneless pinyin of Chinese text, one syllable per character (pypinyin, with its phrase
dictionary for polyphones).

Two users: the OTReg experiment's speech encoder is trained on syllables rather than
characters (``egs2/fleurs_otreg/asr1/local/make_encoder_data.py``), and its summary scores
transcripts by syllable as well as by character, so that an error the speech could not
have prevented (a homophone: 规 and 归 are both ``gui``) is told apart from one that does not
follow the speech at all (:func:`syllable_error_rate`).
"""

from __future__ import annotations

from typing import Iterable, List, Tuple

from espnet_otreg.data.scoring import Counts, align


def syllables(text: str, utt: str = "", strict: bool = True) -> List[str]:
    """One toneless syllable per character of ``text``.

    ``strict``: a character without a reading (Latin, a digit, a symbol) is an error that
    names ``utt``; this is for references. Otherwise (hypotheses, which are whatever a
    model wrote) such a character is kept as its own token ``<c>``, which matches no
    syllable, and whitespace is dropped.
    """
    from pypinyin import Style, lazy_pinyin

    if strict:
        out = lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: [None] * len(s))
        if len(out) != len(text) or any(s is None or not s.isalpha() for s in out):
            bad = [c for c, s in zip(text, out) if s is None or not s.isalpha()]
            raise ValueError(f"{utt}: no pinyin for {''.join(bad) or text!r} in {text!r}")
        return out
    text = "".join(text.split())
    return lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: [f"<{c}>" for c in s])


def syllable_counts(pairs: Iterable[Tuple[str, str, str]]) -> Counts:
    """Pooled alignment counts of (utt, reference, hypothesis) triples by syllable."""
    total = Counts()
    for utt, ref, hyp in pairs:
        total.add(align(syllables(ref, utt), syllables(hyp, utt, strict=False)))
    return total


def syllable_error_rate(pairs: Iterable[Tuple[str, str, str]]) -> float:
    """Syllable error rate (%) of (utt, reference, hypothesis) triples: the CER of their
    toneless pinyin, so a homophone substitution is no error."""
    return syllable_counts(pairs).percentages()["err"]
