"""Whisper-style text normalisation and error rates for multilingual ASR scoring.

FLEURS WERs in the speech-LLM literature (Whisper, OWSM, the OTReg paper's comparison
systems) are computed after Whisper's *basic* text normaliser:

1. lowercase;
2. drop text in ``[...]``, ``<...>`` and ``(...)`` (annotations, not speech);
3. NFKC, then every symbol and punctuation character (Unicode categories ``S*``,
   ``P*``) becomes a space;
4. collapse whitespace.

Whisper's own basic normaliser also turns combining marks (``M*``) into spaces. That
splits Devanagari, Tamil, Thai, Khmer ... words at every vowel sign (``"हिन्दी"`` ->
``"ह न द"``) and makes their WERs meaningless, so by default we *keep* combining marks;
``keep_marks=False`` reproduces Whisper exactly. (Our choice; the OTReg paper does not
state its normaliser.)

Languages written without spaces between words are scored by CER (character error rate
over the normalised text with spaces removed), as in the Whisper and FLEURS papers:
Mandarin, Cantonese, Japanese, Thai, Lao, Burmese, Khmer (:data:`CER_LANGUAGES`).
A "character" is a user-perceived character, an extended grapheme cluster (the
``regex`` package's ``\X``), not a code point: Thai ``"กิ"`` (consonant + vowel sign) is
one unit, so a wrong vowel sign is one substitution and not an extra insertion. For
Han and kana text clusters and code points coincide.

Error rates are corpus-level (total edits / total reference units), computed with
``jiwer``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

# FLEURS language codes (and their ISO 639 prefixes) scored by CER.
CER_LANGUAGES = ("cmn", "yue", "ja", "th", "lo", "my", "km", "zh")

_BRACKETS = re.compile(r"[<\[][^>\]]*[>\]]")
_PARENS = re.compile(r"\(([^)]+?)\)")
_SPACES = re.compile(r"\s+")


def uses_cer(lang: str) -> bool:
    """True when ``lang`` (a FLEURS code like ``cmn_hans_cn`` or an ISO code like ``ja``)
    is written without spaces and therefore scored by CER."""
    return lang.lower().split("_")[0].split("-")[0] in CER_LANGUAGES


def normalize(text: str, keep_marks: bool = True) -> str:
    """Whisper basic normalisation of one transcript (see the module docstring)."""
    s = text.lower()
    s = _BRACKETS.sub("", s)
    s = _PARENS.sub("", s)
    s = unicodedata.normalize("NFKC", s)
    drop = "SP" if keep_marks else "MSP"
    s = "".join(" " if unicodedata.category(c)[0] in drop else c for c in s).lower()
    return _SPACES.sub(" ", s).strip()


def units(text: str, lang: str, keep_marks: bool = True) -> list[str]:
    """The scoring units of a transcript: normalised words, or characters (spaces
    removed) for :func:`uses_cer` languages."""
    s = normalize(text, keep_marks=keep_marks)
    if uses_cer(lang):
        return graphemes(s)
    return s.split()


def graphemes(text: str) -> list[str]:
    """The extended grapheme clusters of ``text`` with whitespace dropped."""
    import regex

    return [g for g in regex.findall(r"\X", text) if not g.isspace()]


@dataclass
class ErrorCounts:
    """Edit counts of one scored set. ``rate`` = (S + D + I) / N, in percent."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    n_ref: int = 0
    n_utt: int = 0
    n_empty_hyp: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return 100.0 * self.errors / max(self.n_ref, 1)

    def add(self, other: "ErrorCounts") -> None:
        for k in ("substitutions", "deletions", "insertions", "n_ref", "n_utt", "n_empty_hyp"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def error_counts(
    refs: Sequence[str], hyps: Sequence[str], lang: str, keep_marks: bool = True
) -> ErrorCounts:
    """Corpus-level S/D/I counts of ``hyps`` against ``refs`` (raw transcripts; both are
    normalised here). Utterances whose normalised reference is empty are an error: the
    data stages must not let them through."""
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    # jiwer works on space-separated tokens: join the units with single spaces.
    ref_t, hyp_t, counts = [], [], ErrorCounts(n_utt=len(refs))
    for i, (r, h) in enumerate(zip(refs, hyps)):
        ru, hu = units(r, lang, keep_marks), units(h, lang, keep_marks)
        if not ru:
            raise ValueError(f"reference {i} is empty after normalisation: {r!r}")
        counts.n_empty_hyp += not hu
        ref_t.append(" ".join(ru))
        hyp_t.append(" ".join(hu))
    if not refs:
        return counts
    out = jiwer.process_words(ref_t, hyp_t)
    counts.substitutions = out.substitutions
    counts.deletions = out.deletions
    counts.insertions = out.insertions
    counts.n_ref = sum(len(r.split()) for r in ref_t)
    return counts


def error_rate(refs: Iterable[str], hyps: Iterable[str], lang: str) -> float:
    """WER (or CER for :func:`uses_cer` languages) in percent."""
    return error_counts(list(refs), list(hyps), lang).rate
