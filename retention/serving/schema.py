"""Requests and responses of the composite model.

Request: one record per customer, as ``dataframe_records``/``inputs``, or the original design's
``{"customer_facts": {...}}`` shape (any mix). Fields:

* ``customer_id`` (required, a non-empty string of at most 200 characters);
* ``name`` (optional; unusable or over-long names are not used, and the message greets "there");
* the Telco fields (all optional: missing ones are scored as missing values and listed in
  ``metadata.warnings``). Categories outside the known sets are treated as missing, with a warning;
* ``local_time`` (ISO 8601) and ``timezone`` (IANA) for quiet hours; ``request_id`` for
  idempotency; ``dry_run`` (true: decide and write the message, record nothing);
  ``with_message`` (default true; false: decision only, no message is written).

Anything else wrong (a non-numeric or out-of-range number, a bad time or zone, a missing
``customer_id``, an empty batch, over ``MAX_BATCH`` records) rejects the batch with field-level
errors such as ``records[3].tenure: must be between 0 and 1200``. The server answers HTTP 400.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from retention.data.validate import load_suite_spec
from retention.tabular.features import RISK_CATEGORICAL, RISK_FEATURES

MAX_BATCH = 20_000
MAX_ID_CHARS = 200
MAX_NAME_CHARS = 200
NUMERIC_RANGES = {"SeniorCitizen": (0, 1), "tenure": (0, 1200), "MonthlyCharges": (0, 10_000),
                  "TotalCharges": (0, 10_000_000)}
OPTIONAL = ("name", "local_time", "timezone", "request_id", "dry_run", "with_message")
INPUT_COLUMNS = ("customer_id", *OPTIONAL, *RISK_FEATURES, "customer_facts")


class RequestError(ValueError):
    """Field-level errors: ``{"records[i].field": "what is wrong"}``."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def allowed_categories() -> dict[str, set[str]]:
    """Allowed values of each Telco categorical field, from the raw Telco expectation suite (one home)."""
    spec = load_suite_spec("telco_raw")
    out = {}
    for e in spec["expectations"]:
        kw = e["kwargs"]
        if e["type"] == "expect_column_values_to_be_in_set" and kw["column"] in RISK_CATEGORICAL:
            out[kw["column"]] = set(kw["value_set"])
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip() == "")


def _bool(v: Any) -> bool | None:
    if _missing(v):
        return False
    if isinstance(v, bool):
        return v
    low = str(v).strip().lower()
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(low)


def parse_request(frame: pd.DataFrame, categories: dict[str, set[str]] | None = None
                  ) -> tuple[pd.DataFrame, list[list[str]]]:
    """Validate and normalise a request frame; returns (records, warnings per record).

    ``categories`` are the allowed values per categorical field: the bundle carries them, since
    the expectation suites are not part of a served model. The default reads the suite.
    """
    records = frame.to_dict("records") if isinstance(frame, pd.DataFrame) else list(frame)
    if not records:
        raise RequestError({"records": "empty batch: send at least one customer record"})
    if len(records) > MAX_BATCH:
        raise RequestError({"records": f"{len(records)} records; at most {MAX_BATCH} per request"})
    cats = categories if categories is not None else allowed_categories()
    errors: dict[str, str] = {}
    rows, warnings = [], []
    for i, rec in enumerate(records):
        facts = rec.get("customer_facts")
        if isinstance(facts, dict):
            rec = {**{k: v for k, v in rec.items() if k != "customer_facts" and not _missing(v)}, **facts}
        elif not _missing(facts):
            errors[f"records[{i}].customer_facts"] = "must be an object of customer fields"
        where = f"records[{i}]"
        row: dict[str, Any] = {}
        notes: list[str] = []
        cid = rec.get("customer_id")
        if _missing(cid) or not isinstance(cid, str | int) or len(str(cid)) > MAX_ID_CHARS:
            errors[f"{where}.customer_id"] = f"required: a non-empty string of at most {MAX_ID_CHARS} characters"
        else:
            row["customer_id"] = str(cid)
        name = rec.get("name")
        if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
            notes.append(f"name longer than {MAX_NAME_CHARS} characters was not used")
            name = ""
        elif not _missing(name) and not isinstance(name, str):
            notes.append("name is not text and was not used")
            name = ""
        row["name"] = name if isinstance(name, str) else ""
        for col, (lo, hi) in NUMERIC_RANGES.items():
            v = rec.get(col)
            if _missing(v):
                row[col] = float("nan")
                continue
            try:
                if isinstance(v, bool):
                    raise ValueError
                x = float(v)
            except (TypeError, ValueError):
                errors[f"{where}.{col}"] = f"must be a number, got {str(v)[:40]!r}"
                continue
            if not math.isfinite(x) or not lo <= x <= hi:
                errors[f"{where}.{col}"] = f"must be between {lo} and {hi}, got {v!r}"
                continue
            row[col] = x
        for col, allowed in cats.items():
            v = rec.get(col)
            if _missing(v):
                row[col] = None
            elif str(v) in allowed:
                row[col] = str(v)
            else:
                row[col] = None
                notes.append(f"{col}={str(v)[:40]!r} is not a known category and was treated as missing")
        missing = [c for c in RISK_FEATURES if _missing(rec.get(c))]
        if missing:
            notes.append(f"missing features scored as missing values: {', '.join(missing)}")
        when = rec.get("local_time")
        if _missing(when):
            row["local_time"] = None
        else:
            try:
                row["local_time"] = datetime.fromisoformat(str(when))
            except ValueError:
                errors[f"{where}.local_time"] = f"must be an ISO 8601 time, got {str(when)[:40]!r}"
        tz = rec.get("timezone")
        if _missing(tz):
            row["timezone"] = None
        else:
            try:
                ZoneInfo(str(tz))
                row["timezone"] = str(tz)
            except (ZoneInfoNotFoundError, ValueError):
                errors[f"{where}.timezone"] = f"unknown IANA time zone {str(tz)[:40]!r}"
        rid = rec.get("request_id")
        row["request_id"] = None if _missing(rid) else str(rid)[:MAX_ID_CHARS]
        dry = _bool(rec.get("dry_run"))
        if dry is None:
            errors[f"{where}.dry_run"] = "must be true or false"
        row["dry_run"] = bool(dry)
        wants = rec.get("with_message")
        wants = True if _missing(wants) else _bool(wants)
        if wants is None:
            errors[f"{where}.with_message"] = "must be true or false"
        row["with_message"] = bool(wants)
        rows.append(row)
        warnings.append(notes)
    if errors:
        raise RequestError(errors)
    out = pd.DataFrame(rows)
    for c in RISK_CATEGORICAL:
        out[c] = out[c].astype(object)
    return out, warnings
