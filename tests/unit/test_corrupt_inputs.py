"""Corrupted raw inputs: each gives a clear error naming the problem and leaves no partial output."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from retention.config import load_config
from retention.data.pipeline import prepare
from retention.errors import DataSourceError, DataValidationError

TELCO = "telco/WA_Fn-UseC_-Telco-Customer-Churn.csv"
BANK = "bank/bank-additional-full.csv.gz"


def _edit_telco(raw_dir, edit):
    path = raw_dir / TELCO
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(df)
    df.to_csv(path, index=False)


def _missing_column(raw_dir):
    _edit_telco(raw_dir, lambda df: df.drop(columns=["Contract"], inplace=True))


def _negative_tenure(raw_dir):
    _edit_telco(raw_dir, lambda df: df.loc.__setitem__((3, "tenure"), "-4"))


def _unexpected_category(raw_dir):
    _edit_telco(raw_dir, lambda df: df.loc.__setitem__((5, "PaymentMethod"), "Bitcoin"))


def _bad_label(raw_dir):
    _edit_telco(raw_dir, lambda df: df.loc.__setitem__((7, "Churn"), "Maybe"))


def _duplicate_ids(raw_dir):
    _edit_telco(raw_dir, lambda df: df.loc.__setitem__((9, "customerID"), df.loc[10, "customerID"]))


def _truncated_gzip(raw_dir):
    path = raw_dir / BANK
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _empty_file(raw_dir):
    (raw_dir / TELCO).write_bytes(b"")


CASES = [
    (_missing_column, DataValidationError, ["expect_table_columns_to_match_set", "missing columns ['Contract']"]),
    (_negative_tenure, DataValidationError, ["column 'tenure'", "-4"]),
    (_unexpected_category, DataValidationError, ["column 'PaymentMethod'", "Bitcoin"]),
    (_bad_label, DataValidationError, ["column 'Churn'", "Maybe"]),
    (_duplicate_ids, DataValidationError, ["expect_column_values_to_be_unique", "column 'customerID'"]),
    (_truncated_gzip, DataSourceError, ["bank-additional-full.csv.gz", "truncated or corrupt"]),
    (_empty_file, DataSourceError, ["Telco-Customer-Churn.csv", "empty"]),
]


@pytest.mark.parametrize("corrupt, error, needles", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_corrupt_input_fails_clearly_and_writes_nothing(tmp_path, raw_dir, mirror, corrupt, error, needles):
    corrupt(raw_dir)
    out = tmp_path / "processed"
    cfg = load_config("smoke", {"data.data_dir": str(raw_dir), "data.mirror_dir": str(mirror),
                                "data.cache_dir": str(tmp_path / "cache"), "data.processed_dir": str(out),
                                "data.allow_download": False})
    with pytest.raises(error) as exc:
        prepare(cfg.data, progress=False)
    message = str(exc.value)
    for needle in needles:
        assert needle in message, message
    assert "Traceback" not in message
    assert not out.exists(), "a failed data step must not leave outputs"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".processed")], "temp folder left behind"


def test_failure_keeps_previous_outputs_intact(tmp_path, raw_dir, mirror):
    out = tmp_path / "processed"
    cfg = load_config("smoke", {"data.data_dir": str(raw_dir), "data.mirror_dir": str(mirror),
                                "data.processed_dir": str(out), "data.allow_download": False})
    prepare(cfg.data, progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _bad_label(raw_dir)
    with pytest.raises(DataValidationError):
        prepare(cfg.data, progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_gzip_of_wrong_content_is_a_validation_error(raw_dir, tmp_path, mirror):
    (raw_dir / BANK).write_bytes(gzip.compress(b"a;b\n1;2\n"))
    cfg = load_config("smoke", {"data.data_dir": str(raw_dir), "data.mirror_dir": str(mirror),
                                "data.processed_dir": str(tmp_path / "p"), "data.allow_download": False})
    with pytest.raises(DataValidationError, match="bank_raw"):
        prepare(cfg.data, progress=False)
