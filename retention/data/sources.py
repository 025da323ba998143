"""Raw data sources: where each file may come from, and its checksum manifest.

Resolution order for every raw file (the first hit wins):

1. an explicit folder (``--data-dir`` / ``RETENTION_DATA_DIR``);
2. the download cache (``data/raw/``);
3. a local mirror folder (``RETENTION_DATA_MIRROR``, default ``../shared/data``);
4. the public sources (IBM's CSV or Kaggle, the UCI archive, the Hugging Face Hub, GitHub),
   downloaded into the cache.

Files found in the cache, the mirror or downloaded must match the manifest's sha256 (of the
file, or of its decompressed content for ``.gz`` files, since a re-gzipped copy is the same
data). A file from an explicit ``--data-dir`` is the user's own: a mismatch is reported as a
warning and the content is then guarded by the Great Expectations suites.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from retention.errors import DataSourceError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class RawFile:
    """One raw file of the manifest.

    Attributes
    ----------
    key:
        Short name used in code and logs.
    relpath:
        Path relative to a data folder (same layout in the cache and the mirror).
    sha256:
        Checksum of the file as distributed.
    content_sha256:
        For ``.gz`` files, checksum of the decompressed bytes (accepted too).
    urls:
        Public download locations, tried in order.
    licence:
        Licence / citation, shown in the README and logs.
    """

    key: str
    relpath: str
    sha256: str
    content_sha256: str | None = None
    urls: tuple[str, ...] = ()
    licence: str = ""
    fetchers: tuple[str, ...] = field(default=())


_HH = "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main"

MANIFEST: dict[str, RawFile] = {
    f.key: f
    for f in (
        RawFile(
            key="telco",
            relpath="telco/WA_Fn-UseC_-Telco-Customer-Churn.csv",
            sha256="16320c9c1ec72448db59aa0a26a0b95401046bef5d02fd3aeb906448e3055e91",
            urls=(
                "https://raw.githubusercontent.com/IBM/telco-customer-churn-on-icp4d/master/data/Telco-Customer-Churn.csv",
            ),
            licence="IBM sample data 'Telco Customer Churn' (IBM repo Apache-2.0)",
            fetchers=("url", "kaggle"),
        ),
        RawFile(
            key="bank",
            relpath="bank/bank-additional-full.csv.gz",
            sha256="a094e578b48abc95ea9229ea88e82bde2fc4c3cdc8c7052c6acb6eb72a478fe6",
            content_sha256="74adfc578bf77a7ff4bb1ba4a9f8709d9e3c6907342959c2c8416847e0afb4d8",
            urls=(
                "https://archive.ics.uci.edu/static/public/222/bank+marketing.zip",
                "https://archive.ics.uci.edu/ml/machine-learning-databases/00222/bank-additional.zip",
            ),
            licence="UCI Bank Marketing, Moro, Cortez & Rita (2014), CC BY 4.0",
            fetchers=("uci_zip",),
        ),
        *(
            RawFile(
                key=f"hh-rlhf/{subset}",
                relpath=f"hh-rlhf/{subset}/test.jsonl.gz",
                sha256=sha,
                content_sha256=content,
                urls=(f"{_HH}/{subset}/test.jsonl.gz",),
                licence="Anthropic HH-RLHF (Bai et al. 2022), MIT",
                fetchers=("url",),
            )
            for subset, sha, content in (
                (
                    "harmless-base",
                    "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03",
                    "14d765196c9f18d84f9bb3a78bac608c8f2915110ebcbd74ec95db7b7198b008",
                ),
                (
                    "helpful-base",
                    "8be3fc1a13b27901631696f2be6f184c799f1baeaf145f53ac5db24960adc37b",
                    "41c3a32fe45a7075f7e32b11bd29383f9fe650287354a95568f61295a8e694da",
                ),
                (
                    "helpful-online",
                    "2094b210af6b2a792b1169d2930586c4b4b384d3b8a4a14460702d383c17df7f",
                    "b6bd51d77d94c6223e83c29e75b12c1c089504d52797561462017c2c0e575b41",
                ),
                (
                    "helpful-rejection-sampled",
                    "6186fc698c638dd5c6bbb33e0c115762d6fdfac0a18969ff4901545307f89a54",
                    "90b4e2c68562123177471bad28650bd9f1fb5dccedb9e25779efa0373e3f6b85",
                ),
            )
        ),
        RawFile(
            key="oasst1",
            relpath="oasst1/en_100_tree.jsonl",
            sha256="a27639214a5098bf9e1cc62a855c85c630b64ab48ee94655e7f6046438b0aedb",
            urls=(
                "https://raw.githubusercontent.com/LAION-AI/Open-Assistant/main/model/model_eval/manual/data/en_100_tree.jsonl",
            ),
            licence="OpenAssistant conversations, Apache-2.0",
            fetchers=("url",),
        ),
    )
}

HH_SUBSETS = tuple(k.split("/", 1)[1] for k in MANIFEST if k.startswith("hh-rlhf/"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content_sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with gzip.open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except (OSError, EOFError):
        return None


def checksum_ok(path: Path, raw: RawFile) -> bool:
    """True when ``path`` matches the manifest (file hash, or decompressed-content hash)."""
    if sha256_file(path) == raw.sha256:
        return True
    if raw.content_sha256 and path.suffix == ".gz":
        return _content_sha256(path) == raw.content_sha256
    return False


@dataclass(frozen=True)
class Resolved:
    """A resolved raw file: its path, where it came from and its checksum status."""

    key: str
    path: Path
    origin: str  # data_dir | cache | mirror | download
    sha256: str
    verified: bool


def _candidates(raw: RawFile, data_dir: str | None, cache_dir: str, mirror_dir: str) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if data_dir:
        base = Path(data_dir)
        out.append(("data_dir", base / raw.relpath))
        out.append(("data_dir", base / Path(raw.relpath).name))
    out.append(("cache", Path(cache_dir) / raw.relpath))
    out.append(("mirror", Path(mirror_dir) / raw.relpath))
    return out


def _fetch_url(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(dest, "wb") as out:  # noqa: S310
        shutil.copyfileobj(resp, out)


def _fetch_uci_zip(url: str, dest: Path) -> None:
    """Download UCI's zip (possibly nested) and store bank-additional-full.csv gzipped."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:  # noqa: S310
        blob = resp.read()

    def find(zbytes: bytes) -> bytes | None:
        with zipfile.ZipFile(io.BytesIO(zbytes)) as zf:
            for name in zf.namelist():
                if name.endswith("bank-additional-full.csv"):
                    return zf.read(name)
            for name in zf.namelist():
                if name.endswith(".zip"):
                    inner = find(zf.read(name))
                    if inner is not None:
                        return inner
        return None

    csv = find(blob)
    if csv is None:
        raise DataSourceError(f"{url} holds no bank-additional-full.csv")
    dest.write_bytes(gzip.compress(csv, compresslevel=9, mtime=0))


def _fetch_kaggle(_: str, dest: Path) -> None:
    """Kaggle copy of Telco (needs ~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY)."""
    has_creds = (Path.home() / ".kaggle" / "kaggle.json").exists() or (
        os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")
    )
    if not has_creds:
        raise DataSourceError("no Kaggle credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY)")
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    with tempfile.TemporaryDirectory() as tmp:
        api.dataset_download_files("blastchar/telco-customer-churn", path=tmp, unzip=True)
        src = next(Path(tmp).glob("*.csv"))
        # Kaggle's copy has CRLF line endings; the manifest hash is of the LF original.
        dest.write_bytes(src.read_bytes().replace(b"\r\n", b"\n"))


_FETCHERS: dict[str, Callable[[str, Path], None]] = {
    "url": _fetch_url,
    "uci_zip": _fetch_uci_zip,
    "kaggle": _fetch_kaggle,
}


def _download(raw: RawFile, cache_dir: str) -> tuple[Path | None, list[str]]:
    """Try every public source; return (path in cache, list of failure notes)."""
    dest = Path(cache_dir) / raw.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    attempts: list[tuple[str, str]] = []
    for fetcher in raw.fetchers:
        if fetcher == "kaggle":
            attempts.append((fetcher, "kaggle:blastchar/telco-customer-churn"))
        else:
            attempts.extend((fetcher, u) for u in raw.urls)
    for fetcher, url in attempts:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            log.info("downloading %s from %s", raw.key, url)
            _FETCHERS[fetcher](url, tmp)
            if not checksum_ok(tmp, raw):
                notes.append(f"{url}: downloaded, but sha256 does not match the manifest")
                continue
            tmp.replace(dest)
            return dest, notes
        except Exception as exc:  # network errors take many forms; each is reported
            notes.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    return None, notes


def resolve(
    key: str,
    *,
    data_dir: str | None = None,
    cache_dir: str = "data/raw",
    mirror_dir: str = "../shared/data",
    allow_download: bool = True,
) -> Resolved:
    """Find raw file ``key`` following the documented order, verifying its checksum.

    Raises
    ------
    DataSourceError
        Naming every place tried, when no usable copy exists.
    """
    if key not in MANIFEST:
        raise DataSourceError(f"unknown raw file '{key}'; known: {', '.join(MANIFEST)}")
    raw = MANIFEST[key]
    if data_dir:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise DataSourceError(
                f"data.data_dir (--data-dir / RETENTION_DATA_DIR): {data_dir} {what}. "
                "Fix: point it at the folder that holds your copies of the raw files "
                f"(e.g. {raw.relpath}), or leave it unset to use the cache, the mirror or a download."
            )
        data_dir = str(folder)
    tried: list[str] = []
    for origin, path in _candidates(raw, data_dir, cache_dir, mirror_dir):
        if not path.is_file():
            tried.append(f"{origin}: {path} (not found)")
            continue
        digest = sha256_file(path)
        ok = checksum_ok(path, raw)
        if ok or origin == "data_dir":
            if not ok:
                log.warning(
                    "%s: %s does not match the manifest checksum (sha256 %s); using it as the "
                    "user's own file, guarded by the data-validation suites",
                    key, path, digest,
                )
            return Resolved(key, path, origin, digest, ok)
        tried.append(f"{origin}: {path} (sha256 {digest[:12]}… does not match the manifest)")
    if allow_download:
        path, notes = _download(raw, cache_dir)
        if path is not None:
            return Resolved(key, path, "download", sha256_file(path), True)
        tried.extend(f"download: {n}" for n in notes)
    else:
        tried.append("download: skipped (downloads disabled: data.allow_download=false)")
    raise DataSourceError(
        f"could not find raw file '{key}' ({raw.relpath}). Tried, in order:\n  - "
        + "\n  - ".join(tried)
        + "\nFix: put the file under --data-dir / RETENTION_DATA_DIR, point RETENTION_DATA_MIRROR at "
        "a mirror folder, or allow network access to the public sources."
    )
