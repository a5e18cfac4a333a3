"""FLEURS from the Hub's parquet conversion / archives (espnet_otreg.data.hf_parquet),
against a fake Hub client serving local files: layout, checksums, resume, partial splits."""

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from espnet_otreg.data.datadir import read_kv  # noqa: E402
from espnet_otreg.data.fleurs import FleursDataError, prepare_split, read_tsv  # noqa: E402
from espnet_otreg.data.hf_parquet import (  # noqa: E402
    PARQUET_REVISION, download_fleurs, parquet_shards,
)


def _wav_bytes(n=800, value=0.1):
    b = io.BytesIO()
    sf.write(b, np.full(n, value, dtype=np.float32), 16000, format="WAV")
    return b.getvalue()


def _shard(path: Path, recs):
    """A parquet shard with FLEURS' columns (audio as struct {bytes, path})."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "id": pa.array([r[0] for r in recs], pa.int32()),
        "num_samples": pa.array([800] * len(recs), pa.int32()),
        "path": pa.array([None] * len(recs), pa.string()),
        "audio": pa.array([{"bytes": r[2], "path": r[1]} for r in recs],
                          pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "transcription": pa.array([r[3].lower().strip(".") for r in recs]),
        "raw_transcription": pa.array([r[3] for r in recs]),
        "gender": pa.array([r[0] % 2 for r in recs], pa.int64()),
        "lang_id": pa.array([19] * len(recs), pa.int64()),
        "language": pa.array(["English"] * len(recs)),
        "lang_group_id": pa.array([0] * len(recs), pa.int64()),
    })
    pq.write_table(table, path)


class FakeHub:
    """Serves files of a local folder per revision; can fail once mid-way."""

    def __init__(self, root: Path, fail_on=None, wrong_sha=()):
        self.root, self.fail_on, self.wrong_sha, self.downloads = root, fail_on, set(wrong_sha), []

    def list_files(self, repo_id, prefix, revision):
        base = self.root / revision.replace("/", "_")
        out = []
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(base).as_posix()
            if p.is_file() and rel.startswith(prefix + "/"):
                sha = hashlib.sha256(p.read_bytes()).hexdigest()
                out.append((rel, "0" * 64 if rel in self.wrong_sha else sha))
        return out

    def download(self, repo_id, filename, revision, cache_dir):
        if filename == self.fail_on:
            self.fail_on = None
            raise ConnectionError("connection reset")
        self.downloads.append(filename)
        dst = Path(cache_dir) / revision.replace("/", "_") / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / revision.replace("/", "_") / filename, dst)
        return str(dst)


@pytest.fixture
def hub(tmp_path):
    base = tmp_path / "hub" / PARQUET_REVISION.replace("/", "_")
    recs = [(7, f"{i}.wav", _wav_bytes(value=0.01 * i), f"Sentence {i}.") for i in range(5)]
    _shard(base / "en_us/train/0000.parquet", recs[:3])
    _shard(base / "en_us/train/0001.parquet", recs[3:])
    _shard(base / "en_us/validation/0000.parquet", recs[:1])
    _shard(base / "en_us/test/0000.parquet", recs[1:3])
    return tmp_path / "hub"


def test_parquet_to_fleurs_layout(tmp_path, hub):
    client = FakeHub(hub)
    done = download_fleurs(tmp_path / "fl", ["en_us"], source="parquet",
                           cache_dir=str(tmp_path / "cache"), client=client)
    assert done == {("en_us", "train"): 5, ("en_us", "dev"): 1, ("en_us", "test"): 2}
    rows = read_tsv(tmp_path / "fl/en_us/train.tsv")
    assert [r.file_name for r in rows] == [f"{i}.wav" for i in range(5)]  # shard order kept
    assert rows[0].raw_transcription == "Sentence 0." and rows[1].gender == "FEMALE"
    x, sr = sf.read(tmp_path / "fl/en_us/audio/train/4.wav")
    assert sr == 16000 and np.allclose(x, 0.04, atol=1e-3)
    # The same reader as for a local copy.
    assert prepare_split(tmp_path / "fl", ["en_us"], "dev", tmp_path / "d") == {"en_us": 1}
    assert read_kv(tmp_path / "d/text") == {"en_us-0": "Sentence 0."}
    # Rerun: nothing downloaded again.
    n = len(client.downloads)
    assert set(download_fleurs(tmp_path / "fl", ["en_us"], client=client,
                               cache_dir=str(tmp_path / "cache")).values()) == {0}
    assert len(client.downloads) == n


def test_interrupted_download_resumes(tmp_path, hub):
    client = FakeHub(hub, fail_on="en_us/train/0001.parquet")
    with pytest.raises(FleursDataError, match=r"en_us/train/0001.parquet failed .*rerun stage 1"):
        download_fleurs(tmp_path / "fl", ["en_us"], ["train"], client=client,
                        cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "fl/en_us/train.tsv").exists()  # incomplete pair not marked done
    download_fleurs(tmp_path / "fl", ["en_us"], ["train"], client=client,
                    cache_dir=str(tmp_path / "cache"))
    assert len(read_tsv(tmp_path / "fl/en_us/train.tsv")) == 5


def test_checksum_mismatch_names_file(tmp_path, hub):
    client = FakeHub(hub, wrong_sha={"en_us/test/0000.parquet"})
    with pytest.raises(FleursDataError, match=r"checksum mismatch for .*en_us/test/0000.parquet"):
        download_fleurs(tmp_path / "fl", ["en_us"], ["test"], client=client,
                        cache_dir=str(tmp_path / "cache"))


def test_partial_or_absent_conversion_refused(tmp_path, hub):
    base = hub / PARQUET_REVISION.replace("/", "_")
    _shard(base / "de_de/partial-train/0000.parquet", [(1, "x.wav", _wav_bytes(), "X.")])
    with pytest.raises(FleursDataError, match="partial"):
        parquet_shards(FakeHub(hub), "google/fleurs", "de_de", "train")
    with pytest.raises(FleursDataError, match="no parquet files for fr_fr/validation"):
        parquet_shards(FakeHub(hub), "google/fleurs", "fr_fr", "dev")


def test_bad_rows_named(tmp_path, hub):
    base = hub / PARQUET_REVISION.replace("/", "_")
    _shard(base / "en_us/test/0000.parquet", [(1, "ok.wav", _wav_bytes(), "Ok."),
                                              (2, "e.wav", _wav_bytes(), "  ")])
    with pytest.raises(FleursDataError, match=r"row 1: empty transcript for en_us e.wav"):
        download_fleurs(tmp_path / "fl", ["en_us"], ["test"], client=FakeHub(hub),
                        cache_dir=str(tmp_path / "cache"))
    _shard(base / "en_us/test/0000.parquet", [(1, "n.wav", b"", "No audio.")])
    with pytest.raises(FleursDataError, match="no audio bytes for en_us n.wav"):
        download_fleurs(tmp_path / "fl", ["en_us"], ["test"], client=FakeHub(hub),
                        cache_dir=str(tmp_path / "cache2"))


def test_archive_source(tmp_path):
    main = tmp_path / "hub" / "main" / "data" / "en_us"
    (main / "audio").mkdir(parents=True)
    (main / "test.tsv").write_text("1\ta.wav\tHi.\thi\th i\t800\tMALE\n")
    with tarfile.open(main / "audio/test.tar.gz", "w:gz") as tar:
        data = _wav_bytes()
        info = tarfile.TarInfo("test/a.wav")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    done = download_fleurs(tmp_path / "fl", ["en_us"], ["test"], source="archive",
                           client=FakeHub(tmp_path / "hub"), cache_dir=str(tmp_path / "cache"))
    assert done == {("en_us", "test"): 1}
    assert prepare_split(tmp_path / "fl", ["en_us"], "test", tmp_path / "d") == {"en_us": 1}
