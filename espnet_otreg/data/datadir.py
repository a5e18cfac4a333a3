"""Kaldi/ESPnet data directories: read, write, validate, split, combine.

A data directory holds one utterance per line in text files keyed by utterance id,
sorted by id (``LC_ALL=C`` byte order, as Kaldi's ``sort``):

- ``wav.scp``   ``<utt> <path>`` or ``<utt> <command> |`` (a Kaldi pipe),
- ``text``      ``<utt> <transcript>``,
- ``utt2spk``   ``<utt> <speaker>``; ``spk2utt`` ``<speaker> <utt> <utt> ...``,
- optionally ``utt2num_samples``, ``utt2dur`` ...

This module replaces the parts of Kaldi's ``utils/`` that ESPnet recipes use
(``fix_data_dir.sh``, ``validate_data_dir.sh``, ``utt2spk_to_spk2utt.pl``,
``split_scp.pl``, ``combine_data.sh``, ``subset_data_dir.sh``) with small Python
functions, so recipes need no Kaldi checkout. Errors name the file, the line and the
utterance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]

#: Files keyed by utterance id that we copy, subset and combine along with a data dir.
UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2lang", "utt2num_samples", "utt2dur", "segments")


class DataDirError(ValueError):
    """A data directory or one of its files is malformed (the message says where)."""


def sort_key(key: str) -> bytes:
    """Kaldi's order: ``LC_ALL=C sort``, i.e. by UTF-8 bytes."""
    return key.encode("utf-8")


def read_kv(path: PathLike, allow_empty_value: bool = False) -> Dict[str, str]:
    """Read a ``<key> <value>`` file into an ordered dict.

    The value is everything after the first run of whitespace (so transcripts and pipe
    commands keep their spaces). Stops with a :class:`DataDirError` naming the file and
    line on: bytes that are not UTF-8, a duplicate key, or (unless
    ``allow_empty_value``) a line with a key but no value.
    """
    path = Path(path)
    out: Dict[str, str] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                key = raw.split(maxsplit=1)[0].decode("utf-8", "replace") if raw.strip() else ""
                raise DataDirError(
                    f"{path}:{lineno}: utterance {key!r}: not UTF-8 text "
                    f"(byte {raw[e.start:e.start + 1]!r} at column {e.start}); "
                    "convert the file to UTF-8"
                ) from None
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            key = parts[0]
            value = parts[1] if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise DataDirError(f"{path}:{lineno}: utterance {key!r} has no value")
            if key in out:
                raise DataDirError(f"{path}:{lineno}: duplicate key {key!r}")
            out[key] = value
    return out


def write_kv(path: PathLike, items: Union[Mapping[str, str], Iterable[Tuple[str, str]]],
             sort: bool = True) -> int:
    """Write ``<key> <value>`` lines (sorted by :func:`sort_key` unless ``sort=False``),
    atomically (a temp file renamed into place, so an interrupted stage never leaves a
    half-written file). Returns the number of lines."""
    path = Path(path)
    pairs = list(items.items() if isinstance(items, Mapping) else items)
    if sort:
        pairs.sort(key=lambda kv: sort_key(kv[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for k, v in pairs:
            if not k or any(c.isspace() for c in k):
                raise DataDirError(f"{path}: invalid key {k!r} (empty or with spaces)")
            f.write(f"{k} {v}\n" if v != "" else f"{k}\n")
    os.replace(tmp, path)
    return len(pairs)


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, List[str]]:
    """``utt2spk`` -> ``spk2utt`` (speakers and their utterances sorted)."""
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk, key=sort_key):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return dict(sorted(spk2utt.items(), key=lambda kv: sort_key(kv[0])))


def write_data_dir(
    data_dir: PathLike,
    wav_scp: Mapping[str, str],
    text: Mapping[str, str],
    utt2spk: Optional[Mapping[str, str]] = None,
    extra: Optional[Mapping[str, Mapping[str, str]]] = None,
) -> int:
    """Write a complete data dir: ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` and any
    ``extra`` per-utterance files (name -> mapping). Without ``utt2spk`` every utterance
    is its own speaker (ESPnet's convention when speakers are unknown). All mappings
    must have the same keys. Returns the number of utterances."""
    data_dir = Path(data_dir)
    keys = set(wav_scp)
    utt2spk = dict(utt2spk) if utt2spk is not None else {u: u for u in wav_scp}
    named = {"text": text, "utt2spk": utt2spk, **(extra or {})}
    for name, m in named.items():
        if set(m) != keys:
            missing = sorted(keys - set(m))[:5]
            unknown = sorted(set(m) - keys)[:5]
            raise DataDirError(
                f"{data_dir}: {name} does not match wav.scp "
                f"(missing e.g. {missing}, not in wav.scp e.g. {unknown})"
            )
    data_dir.mkdir(parents=True, exist_ok=True)
    n = write_kv(data_dir / "wav.scp", wav_scp)
    for name, m in named.items():
        write_kv(data_dir / name, m)
    write_kv(data_dir / "spk2utt",
             {s: " ".join(u) for s, u in utt2spk_to_spk2utt(utt2spk).items()})
    return n


def validate_data_dir(data_dir: PathLike, need_text: bool = True) -> int:
    """Check a data dir the way Kaldi's ``validate_data_dir.sh --no-feats`` does.

    ``wav.scp``, ``utt2spk``, ``spk2utt`` (and ``text`` unless ``need_text=False``) must
    exist, be sorted, have the same utterance ids, no empty transcript, and ``spk2utt``
    must be the inverse of ``utt2spk``. Returns the number of utterances; raises
    :class:`DataDirError` with the first problem found.
    """
    d = Path(data_dir)
    names = ["wav.scp", "utt2spk", "spk2utt"] + (["text"] if need_text else [])
    for name in names:
        if not (d / name).is_file():
            raise DataDirError(f"{d}: missing {name}")
    maps = {name: read_kv(d / name) for name in names if name != "spk2utt"}
    for name, m in maps.items():
        keys = list(m)
        if keys != sorted(keys, key=sort_key):
            raise DataDirError(f"{d / name}: not sorted (LC_ALL=C order)")
    ref = set(maps["wav.scp"])
    for name, m in maps.items():
        if set(m) != ref:
            diff = sorted(ref.symmetric_difference(m), key=sort_key)[:5]
            raise DataDirError(f"{d / name}: utterance ids differ from wav.scp, e.g. {diff}")
    spk2utt = {s: v.split() for s, v in read_kv(d / "spk2utt").items()}
    if spk2utt != {s: u for s, u in utt2spk_to_spk2utt(maps["utt2spk"]).items()}:
        raise DataDirError(f"{d / 'spk2utt'}: not the inverse of utt2spk")
    return len(ref)


def subset_data_dir(src: PathLike, dst: PathLike, keys: Iterable[str]) -> int:
    """Copy the utterances ``keys`` of data dir ``src`` to ``dst`` (every file of
    :data:`UTT_FILES` that exists, plus a fresh ``spk2utt``). Returns the count."""
    src, dst = Path(src), Path(dst)
    keep = set(keys)
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for name in UTT_FILES:
        if (src / name).is_file():
            m = read_kv(src / name, allow_empty_value=(name == "text"))
            n = write_kv(dst / name, {k: v for k, v in m.items() if k in keep})
    if (dst / "utt2spk").is_file():
        write_kv(dst / "spk2utt", {s: " ".join(u) for s, u in
                                   utt2spk_to_spk2utt(read_kv(dst / "utt2spk")).items()})
    return n


def combine_data_dirs(dst: PathLike, srcs: Sequence[PathLike]) -> int:
    """Concatenate data dirs (like Kaldi's ``combine_data.sh``): the files of
    :data:`UTT_FILES` present in *every* source are merged and sorted; utterance ids
    must be unique across sources. Returns the number of utterances."""
    dst = Path(dst)
    names = [n for n in UTT_FILES if all((Path(s) / n).is_file() for s in srcs)]
    merged: Dict[str, Dict[str, str]] = {n: {} for n in names}
    for s in srcs:
        for n in names:
            m = read_kv(Path(s) / n, allow_empty_value=(n == "text"))
            dup = set(m) & set(merged[n])
            if dup:
                raise DataDirError(f"{s}/{n}: ids already in another source: {sorted(dup)[:5]}")
            merged[n].update(m)
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        write_kv(dst / n, merged[n])
    if "utt2spk" in merged:
        write_kv(dst / "spk2utt", {s: " ".join(u) for s, u in
                                   utt2spk_to_spk2utt(merged["utt2spk"]).items()})
    return len(merged.get("wav.scp", merged.get("text", {})))


def split_keys(keys: Sequence[str], n: int) -> List[List[str]]:
    """Split ``keys`` into ``min(n, len(keys))`` contiguous, nearly equal chunks (like
    Kaldi's ``split_scp.pl``; order kept, so merged outputs come back sorted)."""
    n = max(1, min(n, len(keys)))
    q, r = divmod(len(keys), n)
    out, start = [], 0
    for i in range(n):
        end = start + q + (1 if i < r else 0)
        out.append(list(keys[start:end]))
        start = end
    return out


def split_scp(scp: PathLike, out_paths: Sequence[PathLike]) -> List[int]:
    """Split a key-value file into ``len(out_paths)`` parts (fewer lines than parts:
    the extra parts are empty files). Returns the line count of each part."""
    items = list(read_kv(scp, allow_empty_value=True).items())
    chunks = split_keys([k for k, _ in items], len(out_paths))
    values = dict(items)
    counts = []
    for i, p in enumerate(out_paths):
        chunk = chunks[i] if i < len(chunks) else []
        counts.append(write_kv(p, [(k, values[k]) for k in chunk], sort=False))
    return counts


def merge_kv(out: PathLike, parts: Sequence[PathLike]) -> int:
    """Concatenate key-value files written by parallel jobs into one sorted file."""
    merged: Dict[str, str] = {}
    for p in parts:
        m = read_kv(p, allow_empty_value=True)
        dup = set(m) & set(merged)
        if dup:
            raise DataDirError(f"{p}: keys already in another part: {sorted(dup)[:5]}")
        merged.update(m)
    return write_kv(out, merged)


def check_keys(scp: PathLike, reference: PathLike, what: str, rebuild: str) -> int:
    """Raise unless every utterance of ``reference`` (a key-value file such as a data
    dir's ``text``) has an entry in ``scp``; returns how many it checked.

    ESPnet's data loader reads the data keys lazily and dies on the first missing one
    with a bare ``KeyError: '<utt id>'`` mid-epoch; this says before training starts
    which utterances ``scp`` (``what``) lacks and how to rebuild it (``rebuild``).
    """
    if not Path(scp).is_file():
        raise DataDirError(f"{scp}: missing ({what}); {rebuild}")
    have = read_kv(scp, allow_empty_value=True)
    need = read_kv(reference, allow_empty_value=True)
    missing = [k for k in need if k not in have]
    if missing:
        raise DataDirError(
            f"{scp} ({what}) lacks {len(missing)} of the {len(need)} utterances of "
            f"{reference}, e.g. {', '.join(missing[:5])}; {rebuild}")
    return len(need)
