"""Outcomes: what happened after a decision, recorded next to the inference log.

An outcome row names the decision by ``request_id`` or the customer by ``customer_id`` (at least
one) and says what is known so far (each field empty while unknown):

* ``accepted`` (true/false) and ``offer_level_accepted`` (0..3, the offer taken up);
* ``churned`` (true/false) and ``churn_date`` (an ISO date);
* ``opted_out`` (true/false: the customer asked for no more messages);
* ``revenue`` (a number: what the customer paid over the outcome horizon, in the currency of
  ``MonthlyCharges``);
* ``outcome_date`` (required: when this was known).

Privacy: like the inference log, the table ``outcomes`` never holds a raw customer id. The id is
normalised (:func:`~retention.serving.schema.normalise_customer_id`) and stored as the same keyed
hash as the log (:func:`~retention.serving.inference_log.customer_key` under
:func:`~retention.serving.inference_log.log_key`), so outcomes join the log without the id.

Validation (:func:`record_outcomes`) is per row, and field-level: a malformed value, an unknown
``request_id``, an outcome dated before its decision, an acceptance of a decision that made no
contact (or of another offer than the one made), or a customer with no decision logged by then is
rejected with a message such as ``rows[3].accepted: the decision made no contact ...`` that never
repeats a value from the file. The other rows are written, in one transaction. A file without the
columns it needs is refused whole. Re-sending an outcome replaces the earlier one (same
``request_id``, or same customer and ``outcome_date`` when there is no ``request_id``), so
ingesting a file twice changes nothing.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Column, Date, DateTime, Float, Integer, String, Table, and_, delete, insert, select
from sqlalchemy.engine import Engine

from retention.errors import RowsError
from retention.serving.inference_log import customer_key, inference_log, log_key, log_secrets
from retention.serving.ledger import MAX_ID_CHARS, ContactLedger, metadata
from retention.serving.schema import REQUEST_ID, normalise_customer_id
from retention.serving.tables import add_missing_columns

outcomes = Table(
    "outcomes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(MAX_ID_CHARS), nullable=True, index=True),
    Column("customer_key", String(64), nullable=True, index=True),  # HMAC, as in the inference log
    Column("accepted", Boolean, nullable=True),
    Column("churned", Boolean, nullable=True),
    Column("outcome_date", Date, nullable=False, index=True),
    Column("offer_level_accepted", Integer, nullable=True),
    Column("churn_date", Date, nullable=True),
    Column("opted_out", Boolean, nullable=True),
    Column("revenue", Float, nullable=True),
)
ID_COLUMNS = ("request_id", "customer_id")
FLAG_COLUMNS = ("accepted", "churned", "opted_out")
FACT_COLUMNS = (*FLAG_COLUMNS, "revenue")  # a row states at least one of these
COLUMNS = (*ID_COLUMNS, *FACT_COLUMNS, "offer_level_accepted", "churn_date", "outcome_date")
FUTURE_SLACK = timedelta(days=1)  # outcome dates may be "tomorrow" in a time zone ahead of UTC
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class Outcome:
    """One validated outcome row (the customer id already normalised, not yet hashed)."""

    request_id: str | None
    customer_id: str | None
    accepted: bool | None
    churned: bool | None
    outcome_date: date
    offer_level_accepted: int | None = None
    churn_date: date | None = None
    opted_out: bool | None = None
    revenue: float | None = None


@dataclass(frozen=True)
class OutcomeReport:
    """What :func:`record_outcomes` did: rows written, and each rejected field with the reason."""

    written: int
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def rejected_rows(self) -> int:
        return len({k.split(".")[0] for k in self.rejected})


def open_engine(url: str) -> Engine:
    """An engine on the ledger's database, set up as the ledger sets it up (WAL, busy timeout)."""
    return ContactLedger._engine(url)


def _missing(v: Any) -> bool:
    return (v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))
            or (isinstance(v, str) and v.strip() == ""))


def parse_flag(v: Any) -> bool | None:
    """``True``/``False`` from a boolean, 0/1 or a word (true/false/yes/no); None when empty.

    Raises
    ------
    ValueError
        For anything else.
    """
    if _missing(v):
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer) or (isinstance(v, float | np.floating) and float(v).is_integer()):
        if int(v) in (0, 1):
            return bool(int(v))
        raise ValueError
    low = str(v).strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError


def parse_date(v: Any) -> date:
    """An ISO date (``2026-11-25``); a date-time or timestamp gives its date.

    Raises
    ------
    ValueError
        When ``v`` is empty or not an ISO date.
    """
    if isinstance(v, datetime | pd.Timestamp):
        if pd.isna(v):
            raise ValueError
        return v.date()
    if isinstance(v, date):
        return v
    if _missing(v) or not isinstance(v, str):
        raise ValueError
    text = v.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        return datetime.fromisoformat(text).date()


def _number(v: Any) -> float:
    value = float(str(v).strip()) if isinstance(v, str) else float(v)
    if not math.isfinite(value):
        raise ValueError
    return value


def parse_outcomes(frame: pd.DataFrame, today: date | None = None) -> tuple[list[tuple[int, Outcome]], dict[str, str]]:
    """Validate every row on its own; return the good rows (with their row numbers) and the problems.

    Parameters
    ----------
    frame:
        Columns ``request_id`` and/or ``customer_id``, at least one of ``accepted``, ``churned``,
        ``opted_out`` and ``revenue``, ``outcome_date``; optionally ``offer_level_accepted`` and
        ``churn_date``. Other columns are ignored (and never stored).
    today:
        Dates after ``today`` + 1 day are refused (default: today in UTC).

    Returns
    -------
    tuple
        ``[(row number, Outcome), ...]`` and ``{"rows[i].field": what is wrong}``.

    Raises
    ------
    RowsError
        When the file lacks a column it needs, or has no rows: nothing can be read then.
    """
    today = today or datetime.now(UTC).date()
    cols = set(map(str, frame.columns))
    problems: dict[str, str] = {}
    if not cols & set(ID_COLUMNS):
        problems["columns.request_id"] = "missing: give a request_id or a customer_id column (or both)"
    if not cols & set(FACT_COLUMNS):
        problems["columns.accepted"] = "missing: give at least one of accepted, churned, opted_out and revenue"
    if "outcome_date" not in cols:
        problems["columns.outcome_date"] = "missing: the date of each outcome, e.g. 2026-11-25"
    if problems:
        raise RowsError(problems, "outcomes file")
    if len(frame) == 0:
        raise RowsError({"rows": "no rows: the file holds a header only"}, "outcomes file")

    def column(name: str) -> list:
        return frame[name].tolist() if name in cols else [None] * len(frame)

    values = {c: column(c) for c in COLUMNS}
    out: list[tuple[int, Outcome]] = []
    seen_rid: dict[str, int] = {}
    seen_customer_day: dict[tuple[str, date], int] = {}
    for i in range(len(frame)):
        bad: dict[str, str] = {}
        rid = cid = None
        raw_rid, raw_cid = values["request_id"][i], values["customer_id"][i]
        if not _missing(raw_rid):
            text = unicodedata.normalize("NFKC", raw_rid).strip() if isinstance(raw_rid, str) else None
            if text is None or not REQUEST_ID.fullmatch(text):
                bad["request_id"] = (f"must be a request id: 1-{MAX_ID_CHARS} letters, digits or . _ : / + = @ -, "
                                     "starting with a letter or digit")
            else:
                rid = text
        if not _missing(raw_cid):
            cid = normalise_customer_id(raw_cid.item() if isinstance(raw_cid, np.integer) else raw_cid)
            if cid is None:
                bad["customer_id"] = f"must be a customer id: 1-{MAX_ID_CHARS} visible characters, no spaces inside"
        if _missing(raw_rid) and _missing(raw_cid):
            bad["customer_id"] = "empty: give the decision's request_id or the customer_id"
        flags: dict[str, bool | None] = {}
        for f in FLAG_COLUMNS:
            try:
                flags[f] = parse_flag(values[f][i])
            except ValueError:
                bad[f] = "must be true or false (or empty when not known yet)"
                flags[f] = None
        revenue = level = churn_day = None
        if not _missing(values["revenue"][i]):
            try:
                revenue = _number(values["revenue"][i])
            except (TypeError, ValueError):
                bad["revenue"] = "must be a number (or empty when not known yet)"
        if all(_missing(values[f][i]) for f in FACT_COLUMNS):
            bad["accepted"] = "accepted, churned, opted_out and revenue are all empty: give at least one"
        if not _missing(values["offer_level_accepted"][i]):
            try:
                level = int(_number(values["offer_level_accepted"][i]))
                if level != _number(values["offer_level_accepted"][i]) or not 0 <= level <= 3:
                    raise ValueError
            except (TypeError, ValueError):
                bad["offer_level_accepted"] = "must be an offer level 0, 1, 2 or 3 (0/5/10/15 %)"
                level = None
            if flags["accepted"] is not True:
                bad["offer_level_accepted"] = "is given, but accepted is not true"
        when = None
        try:
            when = parse_date(values["outcome_date"][i])
        except (TypeError, ValueError):
            bad["outcome_date"] = "must be an ISO date, e.g. 2026-11-25"
        else:
            if when > today + FUTURE_SLACK:
                bad["outcome_date"] = "is in the future: give the date the outcome happened"
        if not _missing(values["churn_date"][i]):
            try:
                churn_day = parse_date(values["churn_date"][i])
            except (TypeError, ValueError):
                bad["churn_date"] = "must be an ISO date, e.g. 2026-11-25"
            else:
                if flags["churned"] is not True:
                    bad["churn_date"] = "is given, but churned is not true"
                elif when is not None and churn_day > when:
                    bad["churn_date"] = "is after outcome_date: the churn must be known by then"
        if rid is not None:
            if rid in seen_rid:
                bad["request_id"] = f"repeats rows[{seen_rid[rid]}]: one outcome per decision"
            seen_rid.setdefault(rid, i)
        elif cid is not None and when is not None:
            if (cid, when) in seen_customer_day:
                bad["customer_id"] = (f"repeats rows[{seen_customer_day[(cid, when)]}] (same customer and "
                                      "outcome_date): one outcome per customer and day")
            seen_customer_day.setdefault((cid, when), i)
        if bad:
            problems.update({f"rows[{i}].{k}": v for k, v in bad.items()})
            continue
        out.append((i, Outcome(rid, cid, flags["accepted"], flags["churned"], when, level, churn_day,
                               flags["opted_out"], revenue)))
    return out, problems


def read_outcomes_file(path: Path | str) -> pd.DataFrame:
    """Read an outcomes file (``.csv`` or ``.parquet``) as text, so nothing is guessed for the validation."""
    path = Path(path)
    if not path.is_file():
        raise RowsError({"input": "no such file: pass --input with a .csv or .parquet file"}, "outcomes file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def check_against_log(rows: list[tuple[int, Outcome]], keys: list[str | None],
                      decisions: pd.DataFrame) -> dict[str, str]:
    """Problems of outcomes that contradict the logged decisions (pure).

    ``keys`` are the rows' customer keys; ``decisions`` the real (not dry-run, not replayed) log rows
    with ``request_id``, ``customer_key``, ``logged_at``, ``contact`` and ``offer_level``.
    """
    problems: dict[str, str] = {}
    by_request = {r.request_id: r for r in decisions.itertuples() if isinstance(r.request_id, str)}
    by_customer: dict[str, list[tuple[date, bool]]] = {}
    for k, logged, contact in zip(decisions["customer_key"], decisions["logged_at"], decisions["contact"], strict=True):
        by_customer.setdefault(k, []).append((_utc_day(logged), bool(contact)))
    for (i, o), key in zip(rows, keys, strict=True):
        if o.request_id is not None:
            d = by_request.get(o.request_id)
            if d is None:
                problems[f"rows[{i}].request_id"] = ("no real decision was logged under this request id (a dry run "
                                                     "contacted nobody); check the id")
                continue
            if key is not None and o.customer_id is not None and key != d.customer_key:
                problems[f"rows[{i}].customer_id"] = "is not the customer of this request id"
            if o.outcome_date < _utc_day(d.logged_at):
                problems[f"rows[{i}].outcome_date"] = "is before its decision: give the date the outcome happened"
            if o.accepted and not bool(d.contact):
                problems[f"rows[{i}].accepted"] = "the decision made no contact: there was no offer to accept"
            elif o.offer_level_accepted is not None and o.offer_level_accepted != int(d.offer_level):
                problems[f"rows[{i}].offer_level_accepted"] = "is not the offer level the decision made"
            continue
        earlier = sorted(x for x in by_customer.get(key, []) if x[0] <= o.outcome_date)
        if not earlier:
            problems[f"rows[{i}].customer_id"] = ("no real decision was logged for this customer on or before "
                                                  "outcome_date")
        elif o.accepted and not earlier[-1][1]:
            problems[f"rows[{i}].accepted"] = ("the customer's latest decision made no contact: there was no offer "
                                               "to accept")
    return problems


def _utc_day(ts: Any) -> date:
    """The UTC date of a logged time (sqlite returns naive UTC times, Postgres aware ones)."""
    stamp = pd.Timestamp(ts)
    return (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)).date()


def record_outcomes(engine: Engine, frame: pd.DataFrame, now: datetime | None = None) -> OutcomeReport:
    """Validate ``frame`` row by row, against the file's rules and the logged decisions; write the good rows.

    Parameters
    ----------
    engine:
        The ledger's database (the inference log lives there too).
    frame:
        The outcome rows (see :func:`parse_outcomes`).
    now:
        ``recorded_at`` of the rows (default: now, UTC).

    Returns
    -------
    OutcomeReport
        Rows written and the field-level problems of the rows rejected (nothing else is lost).

    Raises
    ------
    RowsError
        When the file lacks a column it needs: nothing is written then.
    """
    rows, problems = parse_outcomes(frame)
    now = now or datetime.now(UTC)
    metadata.create_all(engine, tables=[log_secrets, inference_log, outcomes])
    with engine.begin() as conn:
        add_missing_columns(conn)  # an outcomes table from before offer_level_accepted, churn_date, ...
    key = log_key(engine)  # its own short transaction, before the write lock is taken
    keys = [customer_key(o.customer_id, key) if o.customer_id else None for _, o in rows]
    with engine.begin() as conn:
        rids = {o.request_id for _, o in rows if o.request_id}
        wanted = [k for k in keys if k]
        q = select(inference_log.c.request_id, inference_log.c.customer_key, inference_log.c.logged_at,
                   inference_log.c.contact, inference_log.c.offer_level).where(
            inference_log.c.dry_run.is_(False), inference_log.c.replayed.is_(False),
            inference_log.c.request_id.in_(rids) | inference_log.c.customer_key.in_(set(wanted)))
        decisions = pd.DataFrame(conn.execute(q).all(),
                                 columns=["request_id", "customer_key", "logged_at", "contact", "offer_level"])
        against = check_against_log(rows, keys, decisions)
        problems.update(against)
        bad_rows = {k.split(".")[0] for k in against}
        found = dict(zip(decisions["request_id"], decisions["customer_key"], strict=True))
        records = []
        for (i, o), k in zip(rows, keys, strict=True):
            if f"rows[{i}]" in bad_rows:
                continue
            records.append({"recorded_at": now, "request_id": o.request_id,
                            "customer_key": k if k else found.get(o.request_id),  # from the logged decision
                            "accepted": o.accepted, "churned": o.churned, "outcome_date": o.outcome_date,
                            "offer_level_accepted": o.offer_level_accepted, "churn_date": o.churn_date,
                            "opted_out": o.opted_out, "revenue": o.revenue})
        written = [r["request_id"] for r in records if r["request_id"]]
        if written:
            conn.execute(delete(outcomes).where(outcomes.c.request_id.in_(set(written))))
        for r in records:
            if r["request_id"] is None:
                conn.execute(delete(outcomes).where(and_(outcomes.c.request_id.is_(None),
                                                         outcomes.c.customer_key == r["customer_key"],
                                                         outcomes.c.outcome_date == r["outcome_date"])))
        if records:
            conn.execute(insert(outcomes), records)
    return OutcomeReport(len(records), dict(sorted(problems.items(), key=lambda kv: _row_number(kv[0]))))


def _row_number(field_name: str) -> tuple[int, str]:
    head = field_name.split(".")[0]
    return (int(head[5:-1]) if head.startswith("rows[") else -1, field_name)


def read_outcomes(engine: Engine, since: date | None = None) -> pd.DataFrame:
    """Stored outcomes (``outcome_date >= since``), without raw ids: request id, customer key, every fact, date."""
    metadata.create_all(engine, tables=[outcomes])
    with engine.begin() as conn:
        add_missing_columns(conn)
    q = select(outcomes.c.request_id, outcomes.c.customer_key, outcomes.c.accepted, outcomes.c.churned,
               outcomes.c.outcome_date, outcomes.c.offer_level_accepted, outcomes.c.churn_date,
               outcomes.c.opted_out, outcomes.c.revenue)
    if since is not None:
        q = q.where(outcomes.c.outcome_date >= since)
    with engine.connect() as conn:
        return pd.read_sql(q, conn)
