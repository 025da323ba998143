"""The inference log: one row per decision the composite model makes, for monitoring.

It lives in the ledger's database (sqlite by default, Postgres at scale) and is written by
:meth:`~retention.serving.ledger.ContactLedger.commit` **in the same transaction** as the bookings,
so a crash loses neither or both. Rows are inserted in one batched statement per request.

What a row holds: when, the request id, the bundle (its MLflow run id) and component versions, the
model's input features (the Telco columns, as validated), churn risk, the acceptance probability of
each offer, the decision, ``message_source`` and the shield's violations counted by rule. What it
never holds: names, message text, or the raw customer id. The customer is a **keyed hash**
(HMAC-SHA256 of the normalised id) under ``RETENTION_LOG_KEY``; without that variable a random key
is made once and kept in the database (``log_secrets``), which pseudonymises against anyone who
reads the log alone. Set ``RETENTION_LOG_KEY`` (kept outside the database) in production.

Dry runs are logged and flagged (``dry_run``); answers replayed for a repeated ``request_id`` are
flagged ``replayed``. ``serving.log_retention_days`` prunes old rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from retention.serving.tables import OFFERS, inference_log, log_secrets
from retention.tabular.features import RISK_CATEGORICAL, RISK_NUMERIC

KEY_ENV = "RETENTION_LOG_KEY"

FEATURE_COLUMNS = (*RISK_NUMERIC, *RISK_CATEGORICAL)
PREDICTION_COLUMNS = ("churn_risk", *[f"accept_{k}" for k in range(OFFERS)])
DECISION_COLUMNS = ("contact", "offer_level", "delay_days", "message_source", "shield_passed")


def log_key(engine: Engine) -> bytes:
    """The hashing key: ``RETENTION_LOG_KEY``, else one random key kept in the database."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    with engine.connect() as conn:
        found = conn.execute(select(log_secrets.c.value).where(log_secrets.c.name == "customer_key")).first()
    if found is None:
        try:
            with engine.begin() as conn:
                conn.execute(insert(log_secrets).values(name="customer_key", value=secrets.token_hex(32)))
        except IntegrityError:  # another process made it first
            pass
        with engine.connect() as conn:
            found = conn.execute(select(log_secrets.c.value).where(log_secrets.c.name == "customer_key")).first()
    return found[0].encode()


def customer_key(customer_id: str, key: bytes) -> str:
    """HMAC-SHA256 of the (already normalised) customer id: the same customer, the same key; not reversible."""
    return hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()


AUDIT_COLUMNS = ("policy_contact", "policy_offer", "proposed_contact", "proposed_offer", "guard_override",
                 "arm_probs", "arm_mask", "arm_values", "observation")


def json_rows(values: Any, keys: Sequence[str] | None = None) -> list[str]:
    """``json.dumps`` of each row of a 2-D array (a list, or an object when ``keys`` name the columns).

    The same text as ``json.dumps(row.tolist())`` (or of ``dict(zip(keys, row))``), built without the
    encoder's per-call overhead: the log writes four such columns for every decision. Floats must be
    finite (they are: probabilities, values and the observation); booleans become ``true``/``false``.
    """
    table = np.asarray(values)
    if table.dtype == bool:
        cells = [["true" if v else "false" for v in row] for row in table.tolist()]
    else:
        cells = [[repr(float(v)) for v in row] for row in table.tolist()]
    if keys is None:
        return ["[" + ", ".join(row) + "]" for row in cells]
    heads = [json.dumps(k) + ": " for k in keys]
    return ["{" + ", ".join(h + v for h, v in zip(heads, row, strict=True)) + "}" for row in cells]


def log_rows(rows: pd.DataFrame, responses: Sequence[dict[str, Any]], key: bytes, bundle_run_id: str | None,
             now: datetime, audit: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One log row per response, from the validated request ``rows`` (see module docstring).

    ``audit`` holds, per row, what off-policy evaluation needs beyond the response (:data:`AUDIT_COLUMNS`:
    the policy's arm before and after the guard, the arm mask, probabilities and values, the
    observation). A replayed answer logs none of it: it repeats a decision logged before.
    """
    features = {c: [_plain(v) for v in rows[c].tolist()] for c in FEATURE_COLUMNS}
    versions_json: dict[int, str] = {}  # the responses of one request share their model_versions dict
    out = []
    for i, r in enumerate(responses):
        d, meta, safety = r["decision"], r["metadata"], r.get("safety") or {}
        violations = safety.get("violations")
        rules = Counter(v.get("rule") for v in violations if isinstance(v, dict)) if violations else {}
        accept = list(meta["accept_prob"]) + [0.0] * (OFFERS - len(meta["accept_prob"]))
        versions = meta.get("model_versions") or {}
        if id(versions) not in versions_json:
            versions_json[id(versions)] = json.dumps(versions)
        row = {
            "logged_at": now, "request_id": r.get("request_id"), "customer_key": customer_key(r["customer_id"], key),
            "bundle_run_id": bundle_run_id, "model_versions": versions_json[id(versions)],
            "dry_run": bool(meta.get("dry_run")), "replayed": bool(meta.get("replayed")),
            "churn_risk": float(meta["churn_risk"]),
            "contact": bool(d["contact"]), "offer_level": int(d["offer_level"]), "delay_days": int(d["delay_days"]),
            "message_source": r.get("message_source"), "shield_passed": safety.get("passed"),
            "shield_violations": json.dumps(dict(rules)) if rules else "{}",
            "assignment": meta.get("assignment"), "propensity": meta.get("propensity"),
        }
        replayed = bool(meta.get("replayed"))
        for c in AUDIT_COLUMNS:
            row[c] = None if replayed or audit is None else audit[i][c]
        if replayed:
            row["assignment"] = row["propensity"] = None
        for c in FEATURE_COLUMNS:
            row[c] = features[c][i]
        for k in range(OFFERS):
            row[f"accept_{k}"] = float(accept[k])
        out.append(row)
    return out


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def write(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert log rows in one batched statement, inside the caller's transaction.

    On sqlite the rows go straight to the driver's ``executemany``: the statement is compiled once
    and each column's own bind processor (from SQLAlchemy's type, so values are stored exactly as
    Core would store them) is applied in a loop. Core's per-row parameter construction cost about
    150 µs per row with this table's 40 columns, most of the log's cost at thousands of decisions
    per second. Other databases keep Core's path, which batches the rows into multi-row VALUES
    ("insertmanyvalues") where the driver's ``executemany`` would make one round trip per row.
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(inference_log), rows)
        return
    keys = tuple(rows[0])
    sql, order, procs = _sqlite_insert(conn.dialect, keys)
    columns = [[r[k] for r in rows] for k in order]
    for j, proc in enumerate(procs):
        if proc is not None:
            columns[j] = [proc(v) for v in columns[j]]
    conn.exec_driver_sql(sql, list(zip(*columns, strict=True)))


_compiled_inserts: dict[tuple[str, ...], tuple[str, tuple[str, ...], list]] = {}


def _sqlite_insert(dialect, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...], list]:
    """``(sql, parameter order, bind processors)`` of the log's INSERT for these keys, compiled once."""
    if keys not in _compiled_inserts:
        compiled = insert(inference_log).compile(dialect=dialect, column_keys=list(keys))
        order = tuple(compiled.positiontup or ())
        if sorted(order) != sorted(keys):
            raise RuntimeError(f"inference log: unexpected compiled parameters {order}")  # a SQLAlchemy change
        procs = [inference_log.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in order]
        _compiled_inserts[keys] = (compiled.string, order, procs)
    return _compiled_inserts[keys]


def prune(conn: Connection, before: datetime) -> int:
    return int(conn.execute(delete(inference_log).where(inference_log.c.logged_at < before)).rowcount or 0)


def read_window(engine: Engine, start: datetime | None = None, end: datetime | None = None,
                include_dry_runs: bool = True) -> pd.DataFrame:
    """The log rows with ``start <= logged_at < end`` as a DataFrame (no names, texts or raw ids)."""
    q = select(inference_log)
    if start is not None:
        q = q.where(inference_log.c.logged_at >= start)
    if end is not None:
        q = q.where(inference_log.c.logged_at < end)
    if not include_dry_runs:
        q = q.where(inference_log.c.dry_run.is_(False))
    with engine.connect() as conn:
        return pd.read_sql(q, conn)
