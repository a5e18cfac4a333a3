"""Cross-domain test sets from Common Voice / CoVoST-2 -> Kaldi-style data dirs.

The OTReg paper reports in-domain WER on FLEURS and cross-domain WER on CoVoST-2, whose
audio is Common Voice (CoVoST-2 uses Common Voice 4.0 clips). Neither can be fetched
for the user automatically (Common Voice needs an agreement on its site), so the recipe
takes local copies:

* ``cv_dir``: a Common Voice release, one folder per Common Voice language code
  (``en``, ``de``, ``zh-CN``, ...) holding ``clips/`` (mp3 in the releases) and the
  split tsvs (``test.tsv``: header row, columns ``client_id``, ``path``, ``sentence``...).
* ``covost_dir`` (optional): the CoVoST-2 tsvs, ``covost_v2.<src>_<tgt>.tsv`` with
  columns ``path``, ``sentence``, ``translation``, ``client_id``, ``split``. With it we
  take the CoVoST-2 ``test`` split (X -> en files; ``en_de`` for English) and the
  transcript ``sentence``; without it, Common Voice's own ``test.tsv``.

Utterance id ``<fleurs lang>-cv-<clip stem>``, utt2lang holds the FLEURS code, so
scoring and language prompts work as for FLEURS. A selected language that has no data in
the given copy is reported (log and ``missing_langs.txt``), not an error: CoVoST-2
covers 22 source languages, FLEURS 102. Missing clips and empty sentences raise (or are
skipped and listed with ``on_error="skip"``), naming the tsv line.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Sequence

from espnet_otreg.data.datadir import write_data_dir
from espnet_otreg.data.fleurs import FleursDataError, check_transcript

log = logging.getLogger(__name__)

#: FLEURS code -> Common Voice code, for the CoVoST-2 source languages.
FLEURS_TO_CV = {
    "ar_eg": "ar", "ca_es": "ca", "cmn_hans_cn": "zh-CN", "cy_gb": "cy", "de_de": "de",
    "en_us": "en", "es_419": "es", "et_ee": "et", "fa_ir": "fa", "fr_fr": "fr",
    "id_id": "id", "it_it": "it", "ja_jp": "ja", "lv_lv": "lv", "mn_mn": "mn",
    "nl_nl": "nl", "pt_br": "pt", "ru_ru": "ru", "sl_si": "sl", "sv_se": "sv-SE",
    "ta_in": "ta", "tr_tr": "tr",
}


def _read_tsv(path: Path) -> list[tuple[int, dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not reader.fieldnames or not {"path", "sentence"} <= set(reader.fieldnames):
            raise FleursDataError(f"{path}: expected a header with 'path' and 'sentence' columns")
        return [(i + 2, row) for i, row in enumerate(reader)]


def prepare_cross_domain(
    cv_dir: str | os.PathLike,
    langs: Sequence[str],
    out_dir: str | os.PathLike,
    covost_dir: str | os.PathLike | None = None,
    on_error: str = "raise",
    max_utts_per_lang: int | None = None,
) -> dict[str, int]:
    """Build one test data dir from the selected FLEURS ``langs``. Returns counts."""
    cv_dir = Path(cv_dir)
    if not cv_dir.is_dir():
        raise FleursDataError(f"cross-domain data directory {cv_dir} does not exist")
    wav, text, lang_of, skipped, missing, counts = {}, {}, {}, [], [], {}
    for lang in langs:
        cv = FLEURS_TO_CV.get(lang)
        clips = cv_dir / cv / "clips" if cv else None
        if cv is None or not clips.is_dir():
            missing.append(f"{lang}\t{'not a CoVoST-2 language' if cv is None else f'no {clips}'}")
            continue
        if covost_dir is not None:
            tgt = "de" if cv == "en" else "en"
            tsv = Path(covost_dir) / f"covost_v2.{cv}_{tgt}.tsv"
            if not tsv.is_file():
                missing.append(f"{lang}\tno {tsv}")
                continue
            rows = [(n, r) for n, r in _read_tsv(tsv) if r.get("split") == "test"]
        else:
            tsv = cv_dir / cv / "test.tsv"
            if not tsv.is_file():
                missing.append(f"{lang}\tno {tsv}")
                continue
            rows = _read_tsv(tsv)
        if max_utts_per_lang:
            rows = rows[:max_utts_per_lang]
        n = 0
        for lineno, r in rows:
            where = f"{tsv}:{lineno}"
            utt = f"{lang}-cv-{Path(r['path']).stem}"
            try:
                if utt in wav:
                    raise FleursDataError(f"{where}: duplicate utterance {utt}")
                t = check_transcript(r.get("sentence") or "", utt, where)
                audio = clips / r["path"]
                if not audio.is_file():
                    raise FleursDataError(f"{where}: audio of utterance {utt} is missing: {audio}")
            except FleursDataError as e:
                if on_error != "skip":
                    raise
                skipped.append((utt, str(e)))
                log.warning("skipping: %s", e)
                continue
            wav[utt], text[utt], lang_of[utt] = str(audio.resolve()), t, lang
            n += 1
        counts[lang] = n
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in (("missing_langs.txt", missing),
                        ("skipped_utts.txt", [f"{u}\t{w}" for u, w in skipped])):
        if lines:
            (out / name).write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        elif (out / name).exists():
            (out / name).unlink()
    for m in missing:
        log.warning("cross-domain set: no data for %s", m.replace("\t", ": "))
    if not wav:
        raise FleursDataError(
            f"no cross-domain test data for {', '.join(langs)} under {cv_dir}"
            + (f" / {covost_dir}" if covost_dir else "") + " (see the recipe README for the layout)"
        )
    write_data_dir(out, wav, text, extra={"utt2lang": lang_of})
    log.info("%s: %d utterances (%s)", out, len(wav), ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts
