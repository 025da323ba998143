"""Requests and responses of the composite model.

Request: one record per customer, as ``dataframe_records``/``inputs``, or the original design's
``{"customer_facts": {...}}`` shape (any mix). Fields:

* ``customer_id`` (required: a string or integer of at most 200 characters). It is normalised
  (trimmed, upper case: ``"gina-7 "`` is ``"GINA-7"``) by :func:`normalise_customer_id`;
* ``name`` (optional; unusable or over-long names are not used, and the message greets "there");
* the Telco fields (all optional: missing ones are scored as missing values and listed in
  ``metadata.warnings``), under their Telco names (``MonthlyCharges``) or their snake_case aliases
  (``monthly_charges``, ``contract``, ``payment_method``, ... :data:`FIELD_ALIASES`). ``plan`` is a
  shorthand: a Contract value (``month-to-month``, ``one year``, ``two year``) or an InternetService
  value (``DSL``, ``fiber optic``, ``no``) fills that field when it is not given. Category values
  match ignoring case, spaces, ``_`` and ``-`` (``fiber_optic`` is ``Fiber optic``); other values
  are treated as missing, with a warning;
* ``local_time`` (ISO 8601) and ``timezone`` (IANA) for quiet hours; ``request_id`` for
  idempotency (a string of letters, digits and ``._:/+=@-``, never truncated; it belongs to one
  customer); ``dry_run`` (true: decide and write the message, record nothing);
  ``with_message`` (default true; false: decision only, no message is written).

Anything else wrong (a non-numeric or out-of-range number, a bad time or zone, a missing
``customer_id``, an empty batch, over ``MAX_BATCH`` records) rejects the batch with field-level
errors such as ``records[3].tenure: must be between 0 and 1200``. The server answers HTTP 400.
Unknown fields are ignored and named in ``metadata.warnings`` (``unknown field(s) ignored: plann``).
No error or warning repeats a value from the request: errors name the field and the fix only.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from retention.data.validate import load_suite_spec
from retention.messaging.shield import usable_name
from retention.serving.ledger import MAX_ID_CHARS
from retention.tabular.features import RISK_CATEGORICAL, RISK_FEATURES

MAX_BATCH = 20_000
MAX_NAME_CHARS = 200
REQUEST_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{{0,{MAX_ID_CHARS - 1}}}")
MAX_ZONE_CHARS = 64  # the longest IANA zone name is 32 characters
NUMERIC_RANGES = {"SeniorCitizen": (0, 1), "tenure": (0, 1200), "MonthlyCharges": (0, 10_000),
                  "TotalCharges": (0, 10_000_000)}
OPTIONAL = ("name", "local_time", "timezone", "request_id", "dry_run", "with_message")
INPUT_COLUMNS = ("customer_id", *OPTIONAL, *RISK_FEATURES, "customer_facts")


def snake_case(name: str) -> str:
    """``MonthlyCharges`` -> ``monthly_charges``, ``StreamingTV`` -> ``streaming_tv``, ``customerID`` ->
    ``customer_id``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


# snake_case alias -> canonical field; the canonical name wins when a record gives both
FIELD_ALIASES = {snake_case(c): c for c in RISK_FEATURES if snake_case(c) != c} | {"customerID": "customer_id"}
PLAN_FIELDS = ("Contract", "InternetService")  # what ``plan`` may name, tried in this order
MAX_LISTED_FIELDS = 10
OUTPUTS = ("nested", "flat")  # params.output: one object per customer, or flat columns (Spark, batch files)
REQUEST_FIELDS = (*INPUT_COLUMNS, *FIELD_ALIASES, "plan")  # every field a request may carry


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


def _fold(text: str) -> str:
    """A category value compared loosely: case, spaces, ``_`` and ``-`` do not matter."""
    return re.sub(r"[\s_-]+", " ", text.strip().lower())


def _field_label(name: Any) -> str:
    """An unknown field's name as it may appear in a warning: printable, at most 40 characters."""
    text = "".join(ch for ch in str(name) if ch.isprintable())[:40]
    return text or "(unnamed)"


def _missing(v: Any) -> bool:
    return (v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))
            or (isinstance(v, str) and v.strip() == ""))


def _bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    low = str(v).strip().lower()
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(low)


def known_zone(zone: str) -> bool:
    if len(zone) > MAX_ZONE_CHARS:
        return False
    try:
        ZoneInfo(zone)
        return True
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name the file system refuses
        return False


def normalise_customer_id(value: Any) -> str | None:
    """The one form of a customer id: NFKC, trimmed, upper case; None if it is not an id.

    ``"GINA-7"``, ``" gina-7 "`` and ``"Gina-7"`` are one customer. A JSON integer is accepted as its
    decimal digits; ``true``, floats, empty strings, inner spaces, control characters and ids over
    ``MAX_ID_CHARS`` are not ids.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip().upper()
    if not 0 < len(text) <= MAX_ID_CHARS or not text.isprintable() or re.search(r"\s", text):
        return None
    return text


class _Parse:
    """Column-by-column validation over plain lists: cheap for one record, linear for 20,000.

    Each ``field_*`` method reads one input column and returns the normalised column; problems go
    to ``errors`` (reject the batch) or ``notes`` (a warning on that record).
    """

    def __init__(self, columns: dict[str, list], n: int):
        self.columns, self.n = columns, n
        self.errors: list[tuple[int, str, str]] = []  # (record, key, message)
        self.notes: list[list[str]] = [[] for _ in range(n)]
        self.absent: dict[str, list[bool]] = {}  # per feature column: which records left it out

    def raw(self, name: str) -> list:
        return self.columns.get(name) or [None] * self.n

    def error(self, i: int, field: str, message: str) -> None:
        self.errors.append((i, f"records[{i}].{field}", message))

    def field_customer_id(self) -> list[str | None]:
        out: list[str | None] = []
        for i, v in enumerate(self.raw("customer_id")):
            cid = normalise_customer_id(v)
            if cid is None:
                self.error(i, "customer_id", f"required: a string (or integer) of 1-{MAX_ID_CHARS} visible "
                           "characters, no spaces inside")
            out.append(cid)
        return out

    def field_name(self) -> list[str]:
        out = []
        for i, v in enumerate(self.raw("name")):
            if isinstance(v, str) and len(v) > MAX_NAME_CHARS:
                self.notes[i].append(f"name longer than {MAX_NAME_CHARS} characters was not used")
                v = ""
            elif not _missing(v) and not isinstance(v, str):
                self.notes[i].append("name is not text and was not used")
                v = ""
            elif isinstance(v, str) and v.strip() and not usable_name(v):
                self.notes[i].append("name is not a plausible personal name (letters, at most three parts) "
                                     "and was not used; the message greets without a name")
            out.append(v if isinstance(v, str) else "")
        return out

    def field_number(self, col: str, lo: float, hi: float) -> list[float]:
        out = []
        absent = self.absent[col] = []
        for i, v in enumerate(self.raw(col)):
            x = float("nan")
            absent.append(_missing(v))
            if not absent[-1]:
                try:
                    if isinstance(v, bool):
                        raise ValueError
                    x = float(v)
                except (TypeError, ValueError):
                    self.error(i, col, "must be a number")
                else:
                    if not math.isfinite(x) or not lo <= x <= hi:
                        self.error(i, col, f"must be between {lo} and {hi}")
                        x = float("nan")
            out.append(x)
        return out

    def field_category(self, col: str, allowed: set[str]) -> list[str | None]:
        out: list[str | None] = []
        absent = self.absent[col] = []
        folded = {_fold(a): a for a in allowed}
        for i, v in enumerate(self.raw(col)):
            if type(v) is str and v in allowed:  # the common case first: an exact, known category
                absent.append(False)
                out.append(v)
                continue
            absent.append(_missing(v))
            if absent[-1]:
                out.append(None)
            elif (text := v if isinstance(v, str) else str(v)) in allowed:
                out.append(text)
            elif _fold(text) in folded:
                out.append(folded[_fold(text)])
            else:
                out.append(None)
                self.notes[i].append(f"{col} is not a known category and was treated as missing")
        return out

    def note_missing_features(self) -> None:
        """After the ``field_number``/``field_category`` calls, which recorded what was absent."""
        gaps = [self.absent.get(c) or [_missing(v) for v in self.raw(c)] for c in RISK_FEATURES]
        for i in range(self.n):
            absent = [c for c, col in zip(RISK_FEATURES, gaps, strict=True) if col[i]]
            if absent:
                self.notes[i].append(f"missing features scored as missing values: {', '.join(absent)}")

    def field_local_time(self) -> list[datetime | None]:
        out: list[datetime | None] = []
        for i, v in enumerate(self.raw("local_time")):
            when = None
            if not _missing(v):
                try:
                    when = datetime.fromisoformat(str(v).strip())
                except ValueError:
                    self.error(i, "local_time", "must be an ISO 8601 time, e.g. 2026-11-25T10:00:00")
            out.append(when)
        return out

    def field_timezone(self) -> list[str | None]:
        out: list[str | None] = []
        known: dict[str, bool] = {}
        for i, v in enumerate(self.raw("timezone")):
            if _missing(v):
                out.append(None)
                continue
            zone = str(v)
            if zone not in known:
                known[zone] = known_zone(zone)
            if not known[zone]:
                self.error(i, "timezone", "must be an IANA time zone, e.g. Europe/Berlin")
            out.append(zone if known[zone] else None)
        return out

    def field_request_id(self) -> list[str | None]:
        out: list[str | None] = []
        for i, v in enumerate(self.raw("request_id")):
            if _missing(v):
                out.append(None)
            elif isinstance(v, str) and REQUEST_ID.fullmatch(rid := unicodedata.normalize("NFKC", v).strip()):
                out.append(rid)
            else:
                self.error(i, "request_id", f"must be a string of 1-{MAX_ID_CHARS} letters, digits or . _ : / + = @ - "
                           "(numbers are not accepted: 1 and \"1\" would be the same id)")
                out.append(None)
        return out

    def field_flag(self, col: str, default: bool) -> list[bool]:
        out = []
        for i, v in enumerate(self.raw(col)):
            flag = default if _missing(v) else _bool(v)
            if flag is None:
                self.error(i, col, "must be true or false")
            out.append(bool(flag))
        return out


def _merge_customer_facts(records: list[dict], errors: list[tuple[int, str, str]]) -> list[dict]:
    """Records given as ``{"customer_facts": {...}}``: the nested fields win over the outer ones."""
    out = []
    for i, rec in enumerate(records):
        facts = rec.pop("customer_facts", None)
        if isinstance(facts, dict):
            rec = {**{k: v for k, v in rec.items() if not _missing(v)}, **facts}
        elif not _missing(facts):
            errors.append((i, f"records[{i}].customer_facts", "must be an object of customer fields"))
        out.append(rec)
    return out


def resolve_fields(columns: dict[str, list], n: int, categories: dict[str, set[str]]
                   ) -> tuple[dict[str, list], list[list[str]]]:
    """Map snake_case aliases and ``plan`` onto the canonical fields; name every unknown field.

    Returns the columns under canonical names only, and per record the warnings: unknown fields
    (by name) and a ``plan`` that names no known Contract or InternetService value.
    """
    notes: list[list[str]] = [[] for _ in range(n)]
    known = set(INPUT_COLUMNS)
    out = {k: list(v) for k, v in columns.items() if k in known}
    unknown: list[list[str]] = [[] for _ in range(n)]
    for key, values in columns.items():
        if key in known:
            continue
        canonical = FIELD_ALIASES.get(key)
        if canonical is not None:
            target = out.setdefault(canonical, [None] * n)
            for i, v in enumerate(values):
                if _missing(target[i]) and not _missing(v):
                    target[i] = v
        elif key == "plan":
            folded = {f: {_fold(a): a for a in categories.get(f, ())} for f in PLAN_FIELDS}
            for i, v in enumerate(values):
                if _missing(v):
                    continue
                field = next((f for f in PLAN_FIELDS if _fold(str(v)) in folded[f]), None)
                if field is None:
                    notes[i].append("plan is not a known Contract or InternetService value and was ignored")
                    continue
                target = out.setdefault(field, [None] * n)
                if _missing(target[i]):
                    target[i] = folded[field][_fold(str(v))]
        else:
            for i, v in enumerate(values):
                if not _missing(v):
                    unknown[i].append(_field_label(key))
    for i, names in enumerate(unknown):
        if names:
            notes[i].append(unknown_fields_note(names))
    return out, notes


def unknown_fields_note(names: list[str], where: str = "") -> str:
    """The warning naming unknown fields (printable labels, at most ``MAX_LISTED_FIELDS`` of them)."""
    labels = sorted({_field_label(n) for n in names})
    more = f" and {len(labels) - MAX_LISTED_FIELDS} more" if len(labels) > MAX_LISTED_FIELDS else ""
    return (f"unknown field(s) ignored{' ' + where if where else ''}: {', '.join(labels[:MAX_LISTED_FIELDS])}{more} "
            "(the request fields are listed in docs/serving.md, 'Request and response')")


def parse_request(frame: pd.DataFrame | list[dict], categories: dict[str, set[str]] | None = None
                  ) -> tuple[pd.DataFrame, list[list[str]]]:
    """Validate and normalise a request frame; returns (records, warnings per record).

    ``categories`` are the allowed values per categorical field: the bundle carries them, since
    the expectation suites are not part of a served model. The default reads the suite.
    """
    n = len(frame)
    if n == 0:
        raise RequestError({"records": "empty batch: send at least one customer record"})
    if n > MAX_BATCH:
        raise RequestError({"records": f"{n} records; at most {MAX_BATCH} per request"})
    cats = categories if categories is not None else allowed_categories()
    merge_errors: list[tuple[int, str, str]] = []
    if isinstance(frame, pd.DataFrame) and "customer_facts" not in frame.columns:
        columns = {str(c): frame[c].tolist() for c in frame.columns}
    else:  # the nested shape: merge record by record, then read columns
        records = frame.to_dict("records") if isinstance(frame, pd.DataFrame) else [dict(r) for r in frame]
        records = _merge_customer_facts(records, merge_errors)
        columns = pd.DataFrame(records).to_dict("list")
    columns, field_notes = resolve_fields(columns, n, cats)
    parse = _Parse(columns, n)
    parse.notes = field_notes
    parse.errors.extend(merge_errors)
    out: dict[str, list] = {"customer_id": parse.field_customer_id(), "name": parse.field_name()}
    for col, (lo, hi) in NUMERIC_RANGES.items():
        out[col] = parse.field_number(col, lo, hi)
    for col, allowed in cats.items():
        out[col] = parse.field_category(col, allowed)
    parse.note_missing_features()
    out["local_time"] = parse.field_local_time()
    out["timezone"] = parse.field_timezone()
    out["request_id"] = parse.field_request_id()
    out["dry_run"] = parse.field_flag("dry_run", False)
    out["with_message"] = parse.field_flag("with_message", True)
    if parse.errors:
        raise RequestError({key: msg for _, key, msg in sorted(parse.errors, key=lambda e: e[0])})
    rows = pd.DataFrame({c: pd.Series(v, dtype=object) if c in (*RISK_CATEGORICAL, "local_time") else v
                         for c, v in out.items()})
    return rows, parse.notes
