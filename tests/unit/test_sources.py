import dataclasses
import shutil

import pytest

from retention.data import sources
from retention.data.sources import resolve
from retention.errors import DataSourceError

TELCO = "telco/WA_Fn-UseC_-Telco-Customer-Churn.csv"


def test_order_data_dir_then_cache_then_mirror(tmp_path, mirror):
    cache, data_dir = tmp_path / "cache", tmp_path / "mine"
    got = resolve("telco", data_dir=None, cache_dir=str(cache), mirror_dir=str(mirror), allow_download=False)
    assert got.origin == "mirror" and got.verified

    (cache / "telco").mkdir(parents=True)
    shutil.copy(mirror / TELCO, cache / TELCO)
    got = resolve("telco", cache_dir=str(cache), mirror_dir=str(mirror), allow_download=False)
    assert got.origin == "cache"

    data_dir.mkdir()
    shutil.copy(mirror / TELCO, data_dir / "WA_Fn-UseC_-Telco-Customer-Churn.csv")  # flat layout works too
    got = resolve("telco", data_dir=str(data_dir), cache_dir=str(cache), mirror_dir=str(mirror), allow_download=False)
    assert got.origin == "data_dir" and got.verified


def test_corrupt_cache_copy_is_skipped_not_used(tmp_path, mirror):
    cache = tmp_path / "cache"
    (cache / "telco").mkdir(parents=True)
    (cache / TELCO).write_text("customerID\nbroken\n")
    got = resolve("telco", cache_dir=str(cache), mirror_dir=str(mirror), allow_download=False)
    assert got.origin == "mirror"


def test_user_file_with_other_checksum_is_used_unverified(tmp_path, mirror):
    data_dir = tmp_path / "mine"
    (data_dir / "telco").mkdir(parents=True)
    (data_dir / TELCO).write_bytes((mirror / TELCO).read_bytes().replace(b"\n", b"\r\n"))
    got = resolve("telco", data_dir=str(data_dir), mirror_dir=str(mirror), allow_download=False)
    assert got.origin == "data_dir" and not got.verified


def test_gz_accepted_by_content_hash(tmp_path, mirror):
    import gzip

    cache = tmp_path / "cache"
    (cache / "bank").mkdir(parents=True)
    content = gzip.decompress((mirror / "bank/bank-additional-full.csv.gz").read_bytes())
    (cache / "bank/bank-additional-full.csv.gz").write_bytes(gzip.compress(content, compresslevel=1))
    got = resolve("bank", cache_dir=str(cache), mirror_dir=str(tmp_path / "none"), allow_download=False)
    assert got.origin == "cache" and got.verified


def test_missing_data_dir_is_named_not_ignored(tmp_path, mirror):
    """A mistyped --data-dir must stop the step, not fall through silently to the mirror."""
    for bad in (tmp_path / "nowhere", tmp_path / "a_file"):
        if bad.name == "a_file":
            bad.write_text("x")
        with pytest.raises(DataSourceError) as err:
            resolve("telco", data_dir=str(bad), mirror_dir=str(mirror), allow_download=False)
        msg = str(err.value)
        assert "data.data_dir" in msg and str(bad) in msg and "Fix:" in msg


def test_miss_lists_every_place_tried(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(DataSourceError) as err:
        resolve("telco", data_dir=str(tmp_path / "d"), cache_dir=str(tmp_path / "c"),
                mirror_dir=str(tmp_path / "m"), allow_download=False)
    msg = str(err.value)
    for place in ("data_dir:", "cache:", "mirror:", "download: skipped"):
        assert place in msg
    assert msg.index("data_dir:") < msg.index("cache:") < msg.index("mirror:")


def test_download_verifies_and_fills_the_cache(tmp_path, mirror, monkeypatch):
    """The real download code, fed from a file:// URL (no network)."""
    good = dataclasses.replace(sources.MANIFEST["telco"], urls=((mirror / TELCO).as_uri(),), fetchers=("url",))
    monkeypatch.setitem(sources.MANIFEST, "telco", good)
    cache = tmp_path / "cache"
    got = resolve("telco", cache_dir=str(cache), mirror_dir=str(tmp_path / "none"), allow_download=True)
    assert got.origin == "download" and (cache / TELCO).is_file()


def test_download_with_wrong_checksum_is_rejected(tmp_path, monkeypatch):
    bogus = tmp_path / "bogus.csv"
    bogus.write_text("not,the,file\n")
    bad = dataclasses.replace(sources.MANIFEST["telco"], urls=(bogus.as_uri(),), fetchers=("url",))
    monkeypatch.setitem(sources.MANIFEST, "telco", bad)
    with pytest.raises(DataSourceError, match="does not match the manifest"):
        resolve("telco", cache_dir=str(tmp_path / "c"), mirror_dir=str(tmp_path / "m"), allow_download=True)
    assert not list((tmp_path / "c").rglob("*.csv")) and not list((tmp_path / "c").rglob("*.part"))
