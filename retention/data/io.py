"""Reading raw files with clear errors, and writing outputs atomically."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from retention.errors import DataSourceError


def _check_not_empty(path: Path) -> None:
    if not path.exists():
        raise DataSourceError(f"{path}: file does not exist.")
    if path.stat().st_size == 0:
        raise DataSourceError(f"{path}: file is empty (0 bytes). Re-download it or point --data-dir at a good copy.")


def _check_gzip(path: Path) -> None:
    """Read a gzip file to the end so truncation is caught before parsing."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        raise DataSourceError(
            f"{path}: gzip data is truncated or corrupt ({exc}). Delete the file and fetch it again."
        ) from None


def read_csv(path: Path | str, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` that turns empty, truncated and unparsable files into DataSourceError."""
    path = Path(path)
    _check_not_empty(path)
    if path.suffix == ".gz":
        _check_gzip(path)
    try:
        df = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataSourceError(f"{path}: file has no header and no rows.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataSourceError(f"{path}: could not be parsed as CSV ({exc}).") from None
    if df.empty:
        raise DataSourceError(f"{path}: file has a header but no data rows.")
    return df


def read_jsonl(path: Path | str) -> Iterator[dict[str, Any]]:
    """Yield JSON objects from a (possibly gzipped) JSON-lines file, with line numbers in errors."""
    path = Path(path)
    _check_not_empty(path)
    if path.suffix == ".gz":
        _check_gzip(path)
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataSourceError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from None
            n += 1
            yield obj
    if n == 0:
        raise DataSourceError(f"{path}: no JSON records.")


@contextmanager
def atomic_directory(final: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final``, on error it is removed.

    Nothing is left half-written: readers see either the old folder or the complete new one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
