"""FLEURS: language codes and the on-disk layout -> Kaldi-style data directories.

FLEURS (Conneau et al., 2022; ``google/fleurs`` on the Hugging Face Hub) has 102
languages, each with ``train``/``dev``/``test`` splits. The Hub repository stores, per
language code ``L`` (e.g. ``en_us``)::

    data/L/{train,dev,test}.tsv            one row per recording, 7 tab-separated fields
    data/L/audio/{train,dev,test}.tar.gz   16 kHz mono wavs, named by the tsv's file_name

tsv fields: ``id`` (FLORES sentence id, shared by the several speakers who read it),
``file_name``, ``raw_transcription`` (cased, punctuated), ``transcription`` (normalised),
``chars`` (space-separated characters), ``num_samples``, ``gender``.

This module reads a *local FLEURS directory* in that layout, with ``L/`` directly under
the root or under ``root/data/``, and the audio either extracted
(``L/audio/<split>/<file_name>``) or as the ``.tar.gz`` (extracted here, resumably).
:mod:`espnet_otreg.data.hf_parquet` writes the same layout from the Hub's parquet
conversion, and the recipe's mini-corpus generator writes it too, so one reader serves
all three.

Output (one directory per split, all languages merged, sorted by utterance id)::

    wav.scp   <utt> <abs path>      text     <utt> <raw transcript>
    utt2spk   <utt> <utt>           spk2utt  <utt> <utt>
    utt2lang  <utt> <lang code>

Files are written with :func:`espnet_otreg.data.datadir.write_data_dir` (sorted, atomic).
Utterance id: ``<lang>-<file stem>``. FLEURS has no speaker ids, so each utterance is
its own speaker (as ESPnet's egs2/fleurs does; nothing in the recipe uses speakers).

Bad input is never skipped silently: a malformed tsv row, a missing audio file, an
empty/whitespace-only transcript or a duplicated utterance raises
:class:`FleursDataError` naming the file, line and utterance. With
``on_error="skip"`` such utterances are left out *and* listed in
``<data dir>/skipped_utts.txt`` with the reason, and counted in the log.
"""

from __future__ import annotations

import difflib
import logging
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from espnet_otreg.data.datadir import write_data_dir

log = logging.getLogger(__name__)

#: The 102 FLEURS language codes (Hub configuration names, ``utt2lang`` of the FLEURS
#: recipe) -> English names (the speech-LLM's prompt says the language).
LANGUAGE_NAMES: dict[str, str] = {
    "af_za": "Afrikaans", "am_et": "Amharic", "ar_eg": "Arabic", "as_in": "Assamese",
    "ast_es": "Asturian", "az_az": "Azerbaijani", "be_by": "Belarusian",
    "bg_bg": "Bulgarian", "bn_in": "Bengali", "bs_ba": "Bosnian", "ca_es": "Catalan",
    "ceb_ph": "Cebuano", "ckb_iq": "Sorani Kurdish", "cmn_hans_cn": "Mandarin Chinese",
    "cs_cz": "Czech", "cy_gb": "Welsh", "da_dk": "Danish", "de_de": "German",
    "el_gr": "Greek", "en_us": "English", "es_419": "Spanish", "et_ee": "Estonian",
    "fa_ir": "Persian", "ff_sn": "Fula", "fi_fi": "Finnish", "fil_ph": "Filipino",
    "fr_fr": "French", "ga_ie": "Irish", "gl_es": "Galician", "gu_in": "Gujarati",
    "ha_ng": "Hausa", "he_il": "Hebrew", "hi_in": "Hindi", "hr_hr": "Croatian",
    "hu_hu": "Hungarian", "hy_am": "Armenian", "id_id": "Indonesian", "ig_ng": "Igbo",
    "is_is": "Icelandic", "it_it": "Italian", "ja_jp": "Japanese", "jv_id": "Javanese",
    "ka_ge": "Georgian", "kam_ke": "Kamba", "kea_cv": "Kabuverdianu", "kk_kz": "Kazakh",
    "km_kh": "Khmer", "kn_in": "Kannada", "ko_kr": "Korean", "ky_kg": "Kyrgyz",
    "lb_lu": "Luxembourgish", "lg_ug": "Ganda", "ln_cd": "Lingala", "lo_la": "Lao",
    "lt_lt": "Lithuanian", "luo_ke": "Luo", "lv_lv": "Latvian", "mi_nz": "Maori",
    "mk_mk": "Macedonian", "ml_in": "Malayalam", "mn_mn": "Mongolian", "mr_in": "Marathi",
    "ms_my": "Malay", "mt_mt": "Maltese", "my_mm": "Burmese", "nb_no": "Norwegian",
    "ne_np": "Nepali", "nl_nl": "Dutch", "nso_za": "Northern Sotho", "ny_mw": "Nyanja",
    "oc_fr": "Occitan", "om_et": "Oromo", "or_in": "Odia", "pa_in": "Punjabi",
    "pl_pl": "Polish", "ps_af": "Pashto", "pt_br": "Portuguese", "ro_ro": "Romanian",
    "ru_ru": "Russian", "sd_in": "Sindhi", "sk_sk": "Slovak", "sl_si": "Slovenian",
    "sn_zw": "Shona", "so_so": "Somali", "sr_rs": "Serbian", "sv_se": "Swedish",
    "sw_ke": "Swahili", "ta_in": "Tamil", "te_in": "Telugu", "tg_tj": "Tajik",
    "th_th": "Thai", "tr_tr": "Turkish", "uk_ua": "Ukrainian", "umb_ao": "Umbundu",
    "ur_pk": "Urdu", "uz_uz": "Uzbek", "vi_vn": "Vietnamese", "wo_sn": "Wolof",
    "xh_za": "Xhosa", "yo_ng": "Yoruba", "yue_hant_hk": "Cantonese", "zu_za": "Zulu",
}

#: The 102 FLEURS language codes, sorted.
LANGUAGES: tuple[str, ...] = tuple(sorted(LANGUAGE_NAMES))

#: Default multilingual set: FLEURS languages that are also CoVoST-2 source languages
#: (so the cross-domain test covers them), spanning Latin, Cyrillic and CJK scripts.
#: The OTReg paper does not list its languages; this set is our choice.
DEFAULT_LANGS: tuple[str, ...] = (
    "en_us", "de_de", "fr_fr", "es_419", "it_it", "pt_br", "nl_nl", "ru_ru",
    "cmn_hans_cn", "ja_jp",
)

#: FLEURS split names on disk; the Hub's parquet conversion calls dev "validation".
SPLITS: tuple[str, ...] = ("train", "dev", "test")



class FleursDataError(ValueError):
    """Bad FLEURS input; the message names the file/line/utterance."""


def parse_langs(spec: str | Sequence[str], known: Iterable[str] = LANGUAGES) -> list[str]:
    """``"all"``, ``"default"``, or codes separated by commas/spaces -> sorted unique
    codes. An unknown code raises, with the closest known codes as a hint."""
    known = tuple(known)
    items = spec.replace(",", " ").split() if isinstance(spec, str) else list(spec)
    if not items:
        raise FleursDataError("no language given (--langs is empty)")
    if items == ["all"]:
        return sorted(known)
    if items == ["default"]:
        return sorted(DEFAULT_LANGS)
    out = []
    for code in items:
        if code not in known:
            hint = difflib.get_close_matches(code, known, n=3, cutoff=0.5)
            raise FleursDataError(
                f"unknown FLEURS language code {code!r}"
                + (f"; did you mean {', '.join(hint)}?" if hint else "")
                + " (codes look like en_us, cmn_hans_cn; 'all' selects all 102)"
            )
        out.append(code)
    return sorted(set(out))


@dataclass
class FleursRow:
    sentence_id: str
    file_name: str
    raw_transcription: str
    transcription: str
    num_samples: int
    gender: str
    where: str  # "<tsv path>:<line>" for error messages


def read_tsv(path: str | os.PathLike) -> list[FleursRow]:
    """Parse a FLEURS split tsv. Malformed rows raise, naming ``path:line``."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fields = line.split("\t")
            where = f"{path}:{n}"
            if len(fields) != 7:
                raise FleursDataError(f"{where}: expected 7 tab-separated fields, got {len(fields)}")
            sid, fname, raw, norm, _chars, nsamp, gender = fields
            try:
                nsamp_i = int(nsamp)
            except ValueError:
                raise FleursDataError(f"{where}: num_samples {nsamp!r} is not an integer") from None
            rows.append(FleursRow(sid, fname, raw, norm, nsamp_i, gender, where))
    return rows


def write_tsv(path: str | os.PathLike, rows: Iterable[FleursRow | Sequence]) -> None:
    """Write a split tsv atomically (the file appears only when complete)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            if isinstance(r, FleursRow):
                r = (r.sentence_id, r.file_name, r.raw_transcription, r.transcription,
                     " ".join(r.raw_transcription.replace(" ", "|")), r.num_samples, r.gender)
            fields = [str(x).replace("\t", " ").replace("\n", " ") for x in r]
            f.write("\t".join(fields) + "\n")
    os.replace(tmp, path)


def lang_root(fleurs_dir: str | os.PathLike, lang: str) -> Path:
    """``<dir>/<lang>`` or ``<dir>/data/<lang>`` (a clone of the Hub repository)."""
    base = Path(fleurs_dir)
    for cand in (base / lang, base / "data" / lang):
        if cand.is_dir():
            return cand
    raise FleursDataError(
        f"language {lang!r} not found under {base} (looked for {base / lang} and "
        f"{base / 'data' / lang}); download it first (run.sh stage 1 without --fleurs_dir) "
        "or drop it from --langs"
    )


def audio_dir(root: Path, split: str) -> Path:
    """The extracted audio folder of a split, extracting ``audio/<split>.tar.gz`` if that
    is all there is. Extraction goes to a temporary folder renamed at the end, so an
    interrupted run restarts cleanly."""
    out = root / "audio" / split
    if out.is_dir():
        return out
    tgz = root / "audio" / f"{split}.tar.gz"
    if not tgz.is_file():
        raise FleursDataError(f"no audio for {root.name}/{split}: neither {out}/ nor {tgz} exists")
    tmp = root / "audio" / f".{split}.extracting"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    log.info("extracting %s", tgz)
    with tarfile.open(tgz) as tar:
        for m in tar:
            if not m.isfile() or not m.name.endswith(".wav"):
                continue
            src = tar.extractfile(m)
            with open(tmp / Path(m.name).name, "wb") as f:
                f.write(src.read())
    os.replace(tmp, out)
    return out


def check_transcript(text: str, utt: str, where: str) -> str:
    """The transcript on one line; empty/whitespace-only raises."""
    one_line = " ".join(text.split())
    if not one_line:
        raise FleursDataError(f"{where}: utterance {utt} has an empty transcript")
    return one_line


def prepare_split(
    fleurs_dir: str | os.PathLike,
    langs: Sequence[str],
    split: str,
    out_dir: str | os.PathLike,
    transcript: str = "raw",
    on_error: str = "raise",
    max_utts_per_lang: int | None = None,
) -> dict[str, int]:
    """Build one data dir (all ``langs`` of one ``split``) from a local FLEURS copy.

    ``transcript``: ``raw`` (cased, punctuated: what an LLM should write; scoring
    normalises) or ``normalized`` (FLEURS' lowercase ``transcription`` field).
    ``on_error``: ``raise`` (default) or ``skip`` (listed in ``skipped_utts.txt``).
    Returns ``{lang: number of utterances}``.
    """
    if split not in SPLITS:
        raise FleursDataError(f"unknown split {split!r}; FLEURS has {', '.join(SPLITS)}")
    if transcript not in ("raw", "normalized"):
        raise FleursDataError(f"transcript must be 'raw' or 'normalized', got {transcript!r}")
    if on_error not in ("raise", "skip"):
        raise FleursDataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    entries: dict[str, tuple[str, str, str]] = {}
    skipped: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    for lang in langs:
        root = lang_root(fleurs_dir, lang)
        tsv = root / f"{split}.tsv"
        if not tsv.is_file():
            raise FleursDataError(f"missing {tsv} (FLEURS {lang} {split} transcripts)")
        rows = read_tsv(tsv)
        if max_utts_per_lang:
            rows = rows[:max_utts_per_lang]
        adir = audio_dir(root, split)
        n = 0
        for r in rows:
            utt = f"{lang}-{Path(r.file_name).stem}"
            try:
                if utt in entries:
                    raise FleursDataError(f"{r.where}: duplicate utterance {utt} ({r.file_name})")
                text = r.raw_transcription if transcript == "raw" else r.transcription
                text = check_transcript(text, utt, r.where)
                wav = adir / r.file_name
                if not wav.is_file():
                    raise FleursDataError(f"{r.where}: audio of utterance {utt} is missing: {wav}")
            except FleursDataError as e:
                if on_error == "raise":
                    raise
                skipped.append((utt, str(e)))
                log.warning("skipping: %s", e)
                continue
            entries[utt] = (str(wav.resolve()), text, lang)
            n += 1
        if n == 0:
            raise FleursDataError(f"{tsv}: no usable utterance for {lang} {split}")
        counts[lang] = n
    out = Path(out_dir)
    write_data_dir(
        out, {u: e[0] for u, e in entries.items()}, {u: e[1] for u, e in entries.items()},
        extra={"utt2lang": {u: e[2] for u, e in entries.items()}},
    )
    skip_file = out / "skipped_utts.txt"
    if skipped:
        skip_file.write_text("".join(f"{u}\t{why}\n" for u, why in skipped), encoding="utf-8")
    elif skip_file.exists():
        skip_file.unlink()
    log.info(
        "%s: %d utterances (%s)%s", out_dir, len(entries),
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        f"; {len(skipped)} skipped, listed in {Path(out_dir) / 'skipped_utts.txt'}" if skipped else "",
    )
    return counts
