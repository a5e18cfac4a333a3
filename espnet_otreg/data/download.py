"""Resumable, checksummed downloads and safe tar extraction.

:func:`download` fetches ``url`` to ``dest`` through a ``dest.part`` file, resuming
an interrupted transfer with an HTTP ``Range`` request, and only renames the file into
place once its size and MD5 match what is expected. A complete ``dest`` that already
matches is not fetched again (idempotent). A mismatch is never kept silently: the bad
file is renamed ``dest.bad`` and :class:`DownloadError` says what differed.

:func:`extract_tar` checks that a tar archive is complete (a truncated ``.tgz`` fails
while reading, naming the file) and that no member escapes the target directory, then
writes a ``.done`` stamp so a finished extraction is skipped next time.

Works with ``file://`` URLs too (tests use local fixtures).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)


def _public(url: str) -> str:
    """``url`` without user:password@ or a query string, fit for logs and errors."""
    from urllib.parse import urlsplit, urlunsplit

    p = urlsplit(url)
    host = p.hostname or ""
    netloc = host + (f":{p.port}" if p.port else "")
    return urlunsplit((p.scheme, netloc, p.path, "", ""))

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or an archive failed a check (the message says which and why)."""


def md5sum(path: PathLike, chunk: int = _CHUNK) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _progress(done: int, total: Optional[int], t0: float, name: str, last: list) -> None:
    now = time.time()
    if now - last[0] < 5 and (total is None or done < total):
        return
    last[0] = now
    rate = done / max(now - t0, 1e-6) / 2**20
    if total:
        log.info("%s: %.1f / %.1f MiB (%.0f%%), %.1f MiB/s", name, done / 2**20,
                 total / 2**20, 100 * done / total, rate)
    else:
        log.info("%s: %.1f MiB, %.1f MiB/s", name, done / 2**20, rate)


def download(
    url: str,
    dest: PathLike,
    md5: Optional[str] = None,
    size: Optional[int] = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` with resume and verification.

    Args:
        url: http(s):// or file:// URL.
        dest: final path. ``dest.part`` holds an unfinished transfer.
        md5: expected hex MD5 (checked when given).
        size: expected size in bytes (checked when given).
        retries: attempts after a network error; each resumes where the last stopped.

    Returns ``dest``. Raises :class:`DownloadError` when the file cannot be fetched or
    fails a check; the bad file is kept as ``dest.bad`` for inspection.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        problem = _check(dest, md5, size)
        if problem is None:
            log.info("%s: already downloaded and verified", dest)
            return dest
        log.warning("%s: existing file %s; downloading again", dest, problem)
        os.replace(dest, dest.with_name(dest.name + ".bad"))

    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, size, timeout)
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and part.exists():  # range past the end: .part is complete
                break
            if e.code == 404:
                raise DownloadError(f"{_public(url)}: not found (HTTP 404)") from None
            if attempt == retries:
                raise DownloadError(f"{_public(url)}: HTTP {e.code} after {retries + 1} attempts") from None
            log.warning("%s: HTTP %d; retrying (resume) in 5 s", _public(url), e.code)
            time.sleep(5)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            if attempt == retries:
                raise DownloadError(
                    f"{_public(url)}: failed after {retries + 1} attempts ({e}); "
                    f"{part} keeps the {part.stat().st_size if part.exists() else 0} "
                    "bytes received, run again to resume"
                ) from None
            log.warning("%s: %s; retrying (resume) in 5 s", _public(url), e)
            time.sleep(5)
    problem = _check(part, md5, size)
    if problem is not None:
        bad = dest.with_name(dest.name + ".bad")
        os.replace(part, bad)
        raise DownloadError(f"{_public(url)}: downloaded file {problem}; kept as {bad}. "
                            "Delete it and run again, or check the mirror.")
    os.replace(part, dest)
    log.info("%s: downloaded and verified", dest)
    return dest


def _check(path: Path, md5: Optional[str], size: Optional[int]) -> Optional[str]:
    """None when ``path`` matches ``size`` and ``md5``; else what differs."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"has {actual} bytes, expected {size} (truncated or wrong file)"
    if md5 is not None:
        got = md5sum(path)
        if got != md5.lower():
            return f"has MD5 {got}, expected {md5} (truncated or corrupt)"
    return None


def _fetch(url: str, part: Path, size: Optional[int], timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have >= size:
        return
    req = urllib.request.Request(url)
    if have and not url.startswith("file:"):
        req.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        status = getattr(r, "status", None)
        if have and (url.startswith("file:") or status != 206):
            # No range support (or a local file): skip what we already have.
            mode = "ab"
            _skip(r, have)
        else:
            mode = "ab" if have else "wb"
        length = r.headers.get("Content-Length")
        total = size or ((have + int(length)) if length and mode == "ab" and have else
                         (int(length) if length else None))
        done, t0, last = have, time.time(), [0.0]
        if have:
            log.info("%s: resuming at %d bytes", part.name, have)
        with open(part, mode) as f:
            for block in iter(lambda: r.read(_CHUNK), b""):
                f.write(block)
                done += len(block)
                _progress(done, total, t0, part.name, last)


def _skip(r, n: int) -> None:
    while n > 0:
        block = r.read(min(n, _CHUNK))
        if not block:
            break
        n -= len(block)


def extract_tar(archive: PathLike, dest_dir: PathLike, remove_archive: bool = False) -> Path:
    """Extract ``archive`` (any tar compression) into ``dest_dir``, once.

    A stamp ``dest_dir/.<archive name>.done`` marks a finished extraction and makes a
    second call a no-op. Members with absolute paths or ``..`` are refused. A truncated
    or corrupt archive raises :class:`DownloadError` naming it.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    stamp = dest_dir / f".{archive.name}.done"
    if stamp.is_file():
        log.info("%s: already extracted into %s", archive, dest_dir)
        return dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    root = dest_dir.resolve()
    t0 = last = time.time()
    n_done = size_done = 0
    try:
        with tarfile.open(archive) as tar:
            for m in tar:
                if time.time() - last > 30:  # big archives take minutes: show progress
                    last = time.time()
                    log.info("%s: extracted %d members, %.0f MiB, %.0f s", archive.name,
                             n_done, size_done / 2**20, last - t0)
                n_done += 1
                size_done += m.size
                target = (dest_dir / m.name).resolve()
                if m.name.startswith("/") or (root not in target.parents and target != root):
                    raise DownloadError(f"{archive}: member {m.name!r} escapes {dest_dir}")
                if m.issym() or m.islnk():
                    log.warning("%s: skipping link member %s", archive, m.name)
                    continue
                tar.extract(m, dest_dir)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(
            f"{archive}: cannot extract ({type(e).__name__}: {e}); the archive is "
            "truncated or corrupt: delete it and download again"
        ) from None
    stamp.touch()
    if remove_archive:
        archive.unlink()
    log.info("%s: extracted into %s", archive, dest_dir)
    return dest_dir
