"""espnet_otreg.data.download: checksums, resume, truncated archives (file:// URLs and
a local HTTP server with Range support; no network)."""

import hashlib
import http.server
import io
import tarfile
import threading
from functools import partial

import pytest

from espnet_otreg.data.download import DownloadError, download, extract_tar, md5sum


def _tgz(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def served(tmp_path):
    """A directory served over HTTP (SimpleHTTPRequestHandler honours Range)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = partial(_RangeHandler, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves ``Range: bytes=N-`` with 206, counting bytes sent."""

    sent = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if start >= len(data) > 0:
            self.send_error(416)
            return
        # counted before the write: the client may return (and the test assert)
        # as soon as the last byte arrives, before this thread runs on
        _RangeHandler.sent.append(len(data) - start)
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


def test_download_verifies_and_is_idempotent(tmp_path, served):
    root, url = served
    blob = bytes(range(256)) * 1000
    (root / "a.bin").write_bytes(blob)
    md5 = hashlib.md5(blob).hexdigest()
    dest = download(f"{url}/a.bin", tmp_path / "dl" / "a.bin", md5=md5, size=len(blob))
    assert dest.read_bytes() == blob and md5sum(dest) == md5
    _RangeHandler.sent.clear()
    download(f"{url}/a.bin", dest, md5=md5)  # already there: nothing fetched
    assert _RangeHandler.sent == []


def test_download_resumes_a_partial_file(tmp_path, served):
    root, url = served
    blob = b"0123456789" * 5000
    (root / "b.bin").write_bytes(blob)
    part = tmp_path / "b.bin.part"
    part.write_bytes(blob[:20000])  # an interrupted earlier transfer
    _RangeHandler.sent.clear()
    download(f"{url}/b.bin", tmp_path / "b.bin", md5=hashlib.md5(blob).hexdigest())
    assert (tmp_path / "b.bin").read_bytes() == blob
    assert _RangeHandler.sent == [len(blob) - 20000]  # only the rest was sent


def test_download_complete_part_file_is_finished_without_refetch(tmp_path, served):
    root, url = served
    blob = b"abc" * 1000
    (root / "d.bin").write_bytes(blob)
    (tmp_path / "d.bin.part").write_bytes(blob)  # interrupted right before the rename
    _RangeHandler.sent.clear()
    download(f"{url}/d.bin", tmp_path / "d.bin", md5=hashlib.md5(blob).hexdigest())
    assert (tmp_path / "d.bin").read_bytes() == blob and _RangeHandler.sent == []


def test_download_checksum_mismatch_is_an_error_and_kept_aside(tmp_path, served):
    root, url = served
    (root / "c.bin").write_bytes(b"truncated")
    with pytest.raises(DownloadError, match="MD5 .* expected 0+1 .*truncated or corrupt"):
        download(f"{url}/c.bin", tmp_path / "c.bin", md5="0" * 31 + "1")
    assert (tmp_path / "c.bin.bad").is_file() and not (tmp_path / "c.bin").exists()
    with pytest.raises(DownloadError, match="expected 100"):
        download(f"{url}/c.bin", tmp_path / "c2.bin", size=100)
    with pytest.raises(DownloadError, match="404"):
        download(f"{url}/missing.bin", tmp_path / "m.bin", retries=0)


def test_file_url_download_and_extract_once(tmp_path):
    arc = _tgz(tmp_path / "x.tgz", {"d/a.txt": b"hello", "d/b.txt": b"world"})
    got = download(arc.as_uri(), tmp_path / "dl" / "x.tgz", md5=md5sum(arc))
    out = extract_tar(got, tmp_path / "out")
    assert (out / "d" / "a.txt").read_bytes() == b"hello"
    (out / "d" / "a.txt").write_bytes(b"changed")
    extract_tar(got, tmp_path / "out")  # stamped: not extracted again
    assert (out / "d" / "a.txt").read_bytes() == b"changed"


def test_truncated_archive_is_reported(tmp_path):
    arc = _tgz(tmp_path / "y.tgz", {f"f{i}": bytes(5000) for i in range(20)})
    data = arc.read_bytes()
    arc.write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match=r"y.tgz: cannot extract .*truncated or corrupt"):
        extract_tar(arc, tmp_path / "o")
    assert not (tmp_path / "o" / ".y.tgz.done").exists()


def test_archive_member_escaping_is_refused(tmp_path):
    arc = _tgz(tmp_path / "z.tgz", {"../evil.txt": b"x"})
    with pytest.raises(DownloadError, match="escapes"):
        extract_tar(arc, tmp_path / "o")
    assert not (tmp_path / "evil.txt").exists()


def test_logged_urls_hide_credentials():
    from espnet_otreg.data.download import _public

    assert _public("https://user:secret@host.org:8080/a/b.tgz?token=x") == "https://host.org:8080/a/b.tgz"
    assert _public("file:///tmp/x.tgz") == "file:///tmp/x.tgz"
