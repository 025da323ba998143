"""Outcomes: what happened after a decision, recorded next to the inference log.

An outcome row names the decision by ``request_id`` or the customer by ``customer_id`` (at least
one), says whether the offer was ``accepted`` and whether the customer ``churned`` (each true,
false or empty when not known yet), and when (``outcome_date``, an ISO date).

Privacy: like the inference log, the table ``outcomes`` never holds a raw customer id. The id is
normalised (:func:`~retention.serving.schema.normalise_customer_id`) and stored as the same keyed
hash as the log (:func:`~retention.serving.inference_log.customer_key` under
:func:`~retention.serving.inference_log.log_key`), so outcomes join the log without the id.

Ingestion is all or nothing: every row is validated first; any bad row raises
:class:`~retention.errors.RowsError` with field-level messages (``rows[3].accepted: must be true or
false ...``) that never repeat a value from the file, and nothing is written. The rows are then
written in one transaction. Re-sending an outcome replaces the earlier one (same ``request_id``,
or same customer and ``outcome_date`` when there is no ``request_id``), so ingesting a file twice
changes nothing.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Column, Date, DateTime, Integer, String, Table, and_, delete, insert, select
from sqlalchemy.engine import Engine

from retention.errors import RowsError
from retention.serving.inference_log import customer_key, inference_log, log_key, log_secrets, read_window
from retention.serving.ledger import MAX_ID_CHARS, ContactLedger, metadata
from retention.serving.schema import REQUEST_ID, normalise_customer_id

outcomes = Table(
    "outcomes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(MAX_ID_CHARS), nullable=True, index=True),
    Column("customer_key", String(64), nullable=True, index=True),  # HMAC, as in the inference log
    Column("accepted", Boolean, nullable=True),
    Column("churned", Boolean, nullable=True),
    Column("outcome_date", Date, nullable=False, index=True),
)
ID_COLUMNS = ("request_id", "customer_id")
FLAG_COLUMNS = ("accepted", "churned")
COLUMNS = (*ID_COLUMNS, *FLAG_COLUMNS, "outcome_date")
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


def parse_outcomes(frame: pd.DataFrame, today: date | None = None) -> list[Outcome]:
    """Validate every row; return them all, or raise :class:`RowsError` naming each bad field.

    Parameters
    ----------
    frame:
        Columns ``request_id`` and/or ``customer_id``, ``accepted`` and/or ``churned``,
        ``outcome_date``. Other columns are ignored (and never stored).
    today:
        Outcome dates after ``today`` + 1 day are refused (default: today in UTC).

    Returns
    -------
    list of Outcome
        One per row, in order.
    """
    today = today or datetime.now(UTC).date()
    cols = set(map(str, frame.columns))
    problems: dict[str, str] = {}
    if not cols & set(ID_COLUMNS):
        problems["columns.request_id"] = "missing: give a request_id or a customer_id column (or both)"
    if not cols & set(FLAG_COLUMNS):
        problems["columns.accepted"] = "missing: give an accepted or a churned column (or both)"
    if "outcome_date" not in cols:
        problems["columns.outcome_date"] = "missing: the date of each outcome, e.g. 2026-11-25"
    if problems:
        raise RowsError(problems, "outcomes file")
    if len(frame) == 0:
        raise RowsError({"rows": "no rows: the file holds a header only"}, "outcomes file")

    def column(name: str) -> list:
        return frame[name].tolist() if name in cols else [None] * len(frame)

    rids, cids = column("request_id"), column("customer_id")
    flags = {f: column(f) for f in FLAG_COLUMNS}
    dates = column("outcome_date")
    out: list[Outcome] = []
    seen_rid: dict[str, int] = {}
    seen_customer_day: dict[tuple[str, date], int] = {}
    for i in range(len(frame)):
        rid = cid = None
        if not _missing(rids[i]):
            text = unicodedata.normalize("NFKC", rids[i]).strip() if isinstance(rids[i], str) else None
            if text is None or not REQUEST_ID.fullmatch(text):
                problems[f"rows[{i}].request_id"] = (f"must be a request id: 1-{MAX_ID_CHARS} letters, digits or "
                                                     ". _ : / + = @ -, starting with a letter or digit")
            else:
                rid = text
        if not _missing(cids[i]):
            raw = cids[i].item() if isinstance(cids[i], np.integer) else cids[i]
            cid = normalise_customer_id(raw)
            if cid is None:
                problems[f"rows[{i}].customer_id"] = (f"must be a customer id: 1-{MAX_ID_CHARS} visible characters, "
                                                      "no spaces inside")
        if _missing(rids[i]) and _missing(cids[i]):
            problems[f"rows[{i}].customer_id"] = "empty: give the decision's request_id or the customer_id"
        parsed: dict[str, bool | None] = {}
        for f in FLAG_COLUMNS:
            try:
                parsed[f] = parse_flag(flags[f][i])
            except ValueError:
                problems[f"rows[{i}].{f}"] = "must be true or false (or empty when not known yet)"
                parsed[f] = None
        if all(_missing(flags[f][i]) for f in FLAG_COLUMNS):
            problems[f"rows[{i}].accepted"] = "accepted and churned are both empty: give at least one"
        when = None
        try:
            when = parse_date(dates[i])
        except (TypeError, ValueError):
            problems[f"rows[{i}].outcome_date"] = "must be an ISO date, e.g. 2026-11-25"
        else:
            if when > today + FUTURE_SLACK:
                problems[f"rows[{i}].outcome_date"] = "is in the future: give the date the outcome happened"
        if rid is not None:
            if rid in seen_rid:
                problems[f"rows[{i}].request_id"] = f"repeats rows[{seen_rid[rid]}]: one outcome per decision"
            seen_rid.setdefault(rid, i)
        elif cid is not None and when is not None:
            if (cid, when) in seen_customer_day:
                problems[f"rows[{i}].customer_id"] = (f"repeats rows[{seen_customer_day[(cid, when)]}] (same "
                                                      "customer and outcome_date): one outcome per customer and day")
            seen_customer_day.setdefault((cid, when), i)
        if when is not None:
            out.append(Outcome(rid, cid, parsed["accepted"], parsed["churned"], when))
    if problems:
        raise RowsError(problems, "outcomes")
    return out


def read_outcomes_file(path: Path | str) -> pd.DataFrame:
    """Read an outcomes file (``.csv`` or ``.parquet``) as text, so nothing is guessed for the validation."""
    path = Path(path)
    if not path.is_file():
        raise RowsError({"input": "no such file: pass --input with a .csv or .parquet file"}, "outcomes file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def record_outcomes(engine: Engine, frame: pd.DataFrame, now: datetime | None = None) -> int:
    """Validate ``frame`` (see :func:`parse_outcomes`) and store every row in one transaction.

    Parameters
    ----------
    engine:
        The ledger's database (the inference log lives there too).
    frame:
        The outcome rows.
    now:
        ``recorded_at`` of the rows (default: now, UTC).

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    RowsError
        Any bad row; nothing is written then.
    """
    rows = parse_outcomes(frame)
    now = now or datetime.now(UTC)
    metadata.create_all(engine, tables=[log_secrets, inference_log, outcomes])
    key = log_key(engine)  # its own short transaction, before the write lock is taken
    records = [{"recorded_at": now, "request_id": o.request_id,
                "customer_key": customer_key(o.customer_id, key) if o.customer_id else None,
                "accepted": o.accepted, "churned": o.churned, "outcome_date": o.outcome_date} for o in rows]
    with engine.begin() as conn:
        rids = [r["request_id"] for r in records if r["request_id"]]
        if rids:  # fill the customer from the logged decision when only the request id was given
            found = dict(conn.execute(select(inference_log.c.request_id, inference_log.c.customer_key)
                                      .where(inference_log.c.request_id.in_(set(rids)))).all())
            for r in records:
                if r["customer_key"] is None and r["request_id"] in found:
                    r["customer_key"] = found[r["request_id"]]
            conn.execute(delete(outcomes).where(outcomes.c.request_id.in_(set(rids))))
        for r in records:
            if r["request_id"] is None:
                conn.execute(delete(outcomes).where(and_(outcomes.c.request_id.is_(None),
                                                         outcomes.c.customer_key == r["customer_key"],
                                                         outcomes.c.outcome_date == r["outcome_date"])))
        conn.execute(insert(outcomes), records)
    return len(records)


def read_outcomes(engine: Engine, since: date | None = None) -> pd.DataFrame:
    """Stored outcomes (``outcome_date >= since``), without ids: request id, customer key, flags, date."""
    metadata.create_all(engine, tables=[outcomes])
    q = select(outcomes.c.request_id, outcomes.c.customer_key, outcomes.c.accepted, outcomes.c.churned,
               outcomes.c.outcome_date)
    if since is not None:
        q = q.where(outcomes.c.outcome_date >= since)
    with engine.connect() as conn:
        return pd.read_sql(q, conn)


def join_outcomes(log: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """Attach outcomes to the decisions they are about (pure).

    * An outcome with a ``request_id`` belongs to that decision and to no other: when the decision
      is not in ``log`` (decided outside the cohort read), the outcome is not matched here.
    * One without a ``request_id`` belongs to the customer's latest decision, contacted or not,
      logged on or before its ``outcome_date`` (a churn is an outcome of not contacting too).
    * Dry runs and replayed rows are never matched: a dry run contacted nobody, and a replay repeats
      an earlier decision.

    Parameters
    ----------
    log:
        Inference-log rows (:func:`~retention.serving.inference_log.read_window`), usually the
        cohort of :func:`outcome_cohort`.
    found:
        Stored outcomes (:func:`read_outcomes`).

    Returns
    -------
    pandas.DataFrame
        One row per matched outcome: ``contact``, ``offer_level``, ``predicted_accept`` (the
        acceptance probability of the offer made), ``churn_risk``, ``accepted``, ``churned``.
    """
    cols = ["contact", "offer_level", "predicted_accept", "churn_risk", "accepted", "churned"]
    if log.empty or found.empty:
        return pd.DataFrame(columns=cols)
    keep = pd.Series(True, index=log.index)
    for flag in ("replayed", "dry_run"):
        if flag in log:
            keep &= ~log[flag].fillna(False).astype(bool)
    decisions = log[keep].copy()
    if decisions.empty:
        return pd.DataFrame(columns=cols)
    accept = decisions[[f"accept_{k}" for k in range(4)]].to_numpy(dtype=float)
    level = decisions["offer_level"].astype(int).clip(0, 3).to_numpy()
    decisions["predicted_accept"] = accept[np.arange(len(decisions)), level]
    found = found.reset_index(drop=True)
    by_request = decisions[decisions["request_id"].notna()].drop_duplicates("request_id", keep="last")
    direct = found[found["request_id"].notna()].merge(by_request[["request_id", *cols[:4]]], on="request_id",
                                                      how="inner")
    matched = [direct[cols]]
    by_customer = found[found["request_id"].isna() & found["customer_key"].notna()].copy()
    if len(by_customer):
        # the customer's latest decision logged on or before the outcome's date
        decisions["day"] = pd.to_datetime(pd.to_datetime(decisions["logged_at"], utc=True).dt.date)
        by_customer["day"] = pd.to_datetime(by_customer["outcome_date"])
        right = decisions.sort_values("day")[["day", "customer_key", *cols[:4]]]
        latest = pd.merge_asof(by_customer.sort_values("day"), right, on="day", by="customer_key",
                               direction="backward")
        matched.append(latest.dropna(subset=["contact"])[cols])
    parts = [m for m in matched if len(m)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    for c in ("accepted", "churned"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def outcome_cohort(engine: Engine, start: datetime | None, end: datetime,
                   horizon_days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The decisions whose outcomes may have arrived by ``end``, and those outcomes.

    Labels mature by decision, not by window: a churn reported weeks after its decision still
    meets it. So the cohort is every real decision (no dry runs) logged from ``start`` minus the
    outcome horizon up to ``end``, and the outcomes dated from the cohort's first day on.

    Returns
    -------
    tuple of pandas.DataFrame
        (decisions, outcomes), ready for :func:`join_outcomes`.
    """
    since = None if start is None else start - timedelta(days=horizon_days)
    decisions = read_window(engine, since, end, include_dry_runs=False)
    return decisions, read_outcomes(engine, since=since.date() if since is not None else None)
