"""The two sides of a drift comparison, read from the inference log.

* **The current window** is a slice of the inference log (:func:`current_window`), validated with
  the Great Expectations suite ``expectations/inference_window.json`` (:func:`validate_window`).
* **The reference** is the Telco *train* split scored by the served service itself
  (:func:`reference_frame`): ``service.decide`` with ``dry_run`` against a temporary sqlite
  ledger, read back from that ledger's inference log. It passes exactly the production code.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from retention.errors import EmptyWindowError, MonitoringError
from retention.serving import inference_log

WINDOW = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(text: str) -> timedelta | None:
    """``"7d"`` -> 7 days, ``"24h"``, ``"30m"``, ``"2w"``; ``"all"`` -> None (the whole log)."""
    if str(text).strip().lower() == "all":
        return None
    m = WINDOW.match(str(text).lower())
    if not m or int(m.group(1)) == 0:
        raise MonitoringError(f"window '{text}' not understood: use a positive number with a unit m, h, d or w "
                              "(e.g. 24h, 7d, 2w), or all")
    return timedelta(**{UNITS[m.group(2)]: int(m.group(1))})


def current_window(engine, window: str, now: datetime | None = None, include_dry_runs: bool = True
                   ) -> tuple[pd.DataFrame, datetime | None, datetime]:
    """The log rows of ``window`` ending at ``now`` (replayed answers left out: they repeat a decision).

    Returns
    -------
    tuple
        ``(rows, start, end)``; ``start`` is None for ``all``.

    Raises
    ------
    EmptyWindowError
        When no decision was logged in the window.
    """
    span = parse_window(window)
    end = now or datetime.now(UTC)
    start = end - span if span is not None else None
    rows = inference_log.read_window(engine, start, end, include_dry_runs=include_dry_runs)
    rows = rows[~rows["replayed"].astype(bool)].reset_index(drop=True)
    if rows.empty:
        since = f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC" if start else "at all"
        dry = "" if include_dry_runs else " (dry runs excluded)"
        raise EmptyWindowError(f"no decisions were logged {since}{dry} (window {window}); widen the window "
                               "(e.g. --window all) or point --ledger-url at the serving database")
    return rows, start, end


def validate_window(rows: pd.DataFrame) -> None:
    """Great Expectations suite ``inference_window`` on a log window; raises DataValidationError if it fails."""
    from retention.data.validate import validate_frame

    if rows.empty:
        raise EmptyWindowError("the window holds no decisions; widen the window or check the ledger URL")
    validate_frame(rows, "inference_window").raise_for_failure()


# ----------------------------------------------------------------------------- the reference
def spread_local_times(n: int, end: datetime, days: float = 7.0, seed: int = 0) -> list[str]:
    """``n`` local times (ISO, no zone) on the ``days`` days up to ``end``, between 10:00 and 18:00."""
    rng = np.random.default_rng(seed)
    midnight = end.astimezone(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    back = rng.integers(0, max(1, int(math.ceil(days))), size=n)
    minutes = rng.integers(10 * 60, 18 * 60, size=n)
    return [(midnight - timedelta(days=int(d)) + timedelta(minutes=int(m))).isoformat()
            for d, m in zip(back, minutes, strict=True)]


def as_requests(customers: pd.DataFrame, now: datetime, spread_days: float = 7.0, seed: int = 0,
                dry_run: bool = True) -> pd.DataFrame:
    """Telco rows as decision requests: ``customer_id``, no label, no message, local times spread
    over the ``spread_days`` before ``now`` (unless the rows carry ``local_time``)."""
    req = customers.drop(columns=[c for c in ("Churn",) if c in customers.columns])
    if "customer_id" not in req.columns and "customerID" in req.columns:
        req = req.rename(columns={"customerID": "customer_id"})
    req = req.assign(dry_run=dry_run, with_message=False)  # messages change neither decisions nor predictions
    if "local_time" not in req.columns:
        req["local_time"] = spread_local_times(len(req), now, spread_days, seed)
    return req.reset_index(drop=True)


def send_traffic(service, customers: pd.DataFrame, now: datetime | None = None, spread_days: float = 7.0,
                 chunk_size: int = 2000, seed: int = 1, dry_run: bool = True) -> int:
    """Decide ``customers`` through ``service`` as live traffic, into the service's **own** ledger and log.

    For demos and smoke runs of the monitoring: with ``dry_run`` (the default) nothing is booked,
    every decision is logged (flagged ``dry_run``), and the ``drift`` step counts dry runs unless
    ``monitoring.include_dry_runs`` is false. Returns the number of decisions made.
    """
    now = now or datetime.now(UTC)
    req = as_requests(customers, now, spread_days, seed, dry_run)
    for lo in range(0, len(req), max(1, chunk_size)):
        service.decide(req.iloc[lo:lo + chunk_size].reset_index(drop=True), now=now)
    return len(req)


def reference_frame(service, customers: pd.DataFrame, now: datetime | None = None, spread_days: float = 7.0,
                    chunk_size: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Score ``customers`` with the serving ``service`` as dry runs; return their inference-log rows.

    The service decides against a **temporary** sqlite ledger (a fresh campaign, nobody contacted
    yet) and its inference log is read back, so the reference passes exactly the production code
    (request validation, scoring, guard, logging) and has the log's columns. Nothing is written to
    the service's own ledger, and no MLflow trace is recorded (internal scoring is not traffic); the
    service is restored afterwards.

    Parameters
    ----------
    service:
        A :class:`~retention.serving.service.DecisionService`.
    customers:
        Telco rows (``customerID`` or ``customer_id``, the feature columns; ``Churn`` is dropped).
    now:
        Decision time (default now, UTC): the end of the window being compared.
    spread_days:
        Rows without a ``local_time`` get one spread uniformly over the ``spread_days`` before
        ``now`` (10:00-18:00), as live traffic's are. Decisions do not read the date (acceptance is
        averaged over its training calendar), so the spread moves quiet hours and send times only.
    chunk_size:
        Records per ``decide`` call.
    seed:
        Seed of the spread of local times.

    Returns
    -------
    pandas.DataFrame
        One row per customer, the columns of :func:`~retention.serving.inference_log.read_window`.
    """
    from retention.serving.ledger import ContactLedger

    now = now or datetime.now(UTC)
    req = as_requests(customers, now, spread_days, seed)
    saved = (service.ledger, service.serving, service._key, service._last_prune)
    with tempfile.TemporaryDirectory(prefix="retention-reference-") as tmp:
        ledger = ContactLedger(f"sqlite:///{Path(tmp) / 'reference.db'}", service.rules, service.serving.campaign,
                               service.serving.campaign_budget)
        service.ledger, service._key, service._last_prune = ledger, None, None
        # internal scoring: logged to the temporary ledger, and no MLflow trace beside real traffic's
        service.serving = dataclasses.replace(service.serving, inference_log=True, tracing=False)
        try:
            for lo in range(0, len(req), max(1, chunk_size)):
                service.decide(req.iloc[lo:lo + chunk_size].reset_index(drop=True), now=now)
            rows = inference_log.read_window(ledger.engine)
        finally:
            ledger.engine.dispose()
            service.ledger, service.serving, service._key, service._last_prune = saved
    return rows
