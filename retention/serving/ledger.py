"""The contact ledger: every decision that books a contact or carries a ``request_id``, in one SQL database.

The decision state (days since last contact, fatigue count, cooldown, budget remaining) comes from
here at serving time. Requests never supply it.

**A booking exists if and only if a committed response says "contact".** The service decides and
writes the messages first, touching nothing; then :meth:`ContactLedger.commit` records the whole
batch in **one transaction**: for each record it re-checks fatigue, cooldown and budget, books the
contact, and stores the response in the same row. A request that fails before the commit books
nothing; a crash during the commit rolls the whole batch back; there is no reservation without a
response to expire. Concurrency:

* sqlite (the default, ``sqlite:///ledger.db``): WAL journal, and every write transaction starts
  with ``BEGIN IMMEDIATE``, which takes the database's write lock, so commits from several threads
  or worker processes are serialised; a busy timeout makes them wait, not fail;
* any other SQLAlchemy URL (e.g. Postgres for several nodes): the transaction locks the campaign
  row with ``SELECT ... FOR UPDATE`` first, which serialises commits per campaign. The unique
  ``request_id`` is the last line of defence.

A contact books its **worst-case** cost (the message plus the full discount, as if accepted), so
the budget cannot be overspent whatever customers answer.

**Idempotency.** A ``request_id`` belongs to one customer. A repeat for the same customer gets
the recorded response back and books nothing (also when two copies race: the second one to commit
finds the first one's row); a repeat for another customer is a :class:`RequestConflict`.

**Privacy.** The full response (first name, message text) is kept only for
``response_retention_days``, long enough for clients to retry; :meth:`ContactLedger.prune` then
deletes it. What stays is the audit record: decision, offer, cost, message source, shield verdict,
model versions and a SHA-256 of the message, with no name and no text. Rows that booked nothing
(kept only to answer repeats) are deleted entirely at that point.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from retention.policy.guard import NEVER_CONTACTED, GuardRules
from retention.serving.tables import (  # noqa: F401 - re-exported: the ledger's tables and schema
    MAX_ID_CHARS,
    SCHEMA_LOCK_KEY,
    campaigns,
    create_schema,
    decisions,
    metadata,
)


@dataclass(frozen=True)
class DecisionState:
    """The fields shared with the simulator (see DESIGN.md)."""

    days_since_contact: float
    fatigue_count: int
    cooldown_active: bool
    budget_remaining: float


@dataclass(frozen=True)
class Booking:
    """One record for :meth:`ContactLedger.commit`: the response as decided, and its worst-case cost."""

    customer_id: str
    request_id: str | None
    response: dict[str, Any]
    cost: float
    retention_prob_if_refused: float = 0.0  # ``estimated_retention_prob`` when the contact is refused


@dataclass(frozen=True)
class Recorded:
    """A response recorded earlier under a ``request_id``."""

    customer_id: str
    response: dict[str, Any]


class RequestConflict(ValueError):
    """A ``request_id`` already belongs to another customer: ``{"records[i].request_id": why}``."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def use_wal(cursor, attempts: int = 100, pause_s: float = 0.05) -> None:
    """Put a sqlite database in WAL mode (once: the mode is stored in the file).

    Switching modes can fail at once with "database is locked" while another process opens the
    same new file (SQLite does not always call the busy handler there), as Spark workers loading
    the model together do. So: read the mode first, and retry the switch with a short backoff.
    """
    for attempt in range(attempts):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(pause_s * (1 + attempt % 4))


def adapt_numpy_for_psycopg2() -> None:
    """Let psycopg2 write numpy scalars (the service's costs, features and scores are numpy values).

    Without this psycopg2 renders ``np.float64(2.0)`` by its repr and Postgres rejects the statement
    (``schema "np" does not exist``); sqlite's driver accepts them. Registered once per process.
    """
    import numpy as np
    from psycopg2.extensions import adapt, register_adapter

    for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
              np.uint32, np.uint64, np.bool_):
        register_adapter(t, lambda v: adapt(v.item()))


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def audit_record(response: dict[str, Any]) -> dict[str, Any]:
    """What is kept after the retention period: the response without the name and the message text."""
    message = response.get("message")
    meta = response.get("metadata") or {}
    safety = response.get("safety") or {}
    return {
        "customer_id": response.get("customer_id"), "request_id": response.get("request_id"),
        "decision": response.get("decision"), "message_source": response.get("message_source"),
        "message_sha256": hashlib.sha256(message.encode()).hexdigest() if isinstance(message, str) else None,
        "safety": {"passed": safety.get("passed"), "verdict": safety.get("verdict"),
                   "rules": sorted({v.get("rule") for v in safety.get("violations", []) if isinstance(v, dict)}),
                   "send_at": safety.get("send_at")},
        "metadata": {k: meta.get(k) for k in ("churn_risk", "accept_prob", "expected_value", "model_versions")},
    }


def response_from_audit(audit: dict[str, Any]) -> dict[str, Any]:
    """The answer to a repeat whose full response was deleted: the decision as recorded, without text."""
    return {
        "customer_id": audit["customer_id"], "request_id": audit["request_id"], "decision": audit["decision"],
        "message": None, "message_source": audit["message_source"],
        "safety": {"passed": audit["safety"]["passed"], "verdict": audit["safety"].get("verdict"), "violations": [],
                   "send_at": audit["safety"]["send_at"]},
        "metadata": {**audit["metadata"], "dry_run": False,
                     "warnings": ["the full response was deleted after the retention period; "
                                  "this is the decision as recorded, without the message"]},
    }


class ContactLedger:
    """Contacts, recorded responses and the budget of one campaign (guarantees: module docstring)."""

    def __init__(self, url: str, rules: GuardRules, campaign: str = "default", budget: float = 1000.0,
                 response_retention_days: float = 7.0):
        self.url, self.rules, self.campaign = url, rules, campaign
        self.retention = timedelta(days=response_retention_days)
        self.engine = self._engine(url)
        create_schema(self.engine)
        try:
            with self.engine.begin() as conn:
                found = conn.execute(select(campaigns.c.name).where(campaigns.c.name == campaign)).first()
                if found is None:
                    conn.execute(insert(campaigns).values(name=campaign, budget_total=float(budget),
                                                          budget_spent=0.0, created_at=datetime.now(UTC)))
        except IntegrityError:  # another process created the campaign first (Postgres; sqlite serialises)
            pass

    @staticmethod
    def _engine(url: str) -> Engine:
        if not url.startswith("sqlite"):
            if url.startswith("postgresql"):
                adapt_numpy_for_psycopg2()
            return create_engine(url, pool_pre_ping=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=60000")
            use_wal(cur)
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    # ------------------------------------------------------------------ reads
    def _budget(self, conn: Connection, lock: bool = False) -> tuple[float, float]:
        q = select(campaigns.c.budget_total, campaigns.c.budget_spent).where(campaigns.c.name == self.campaign)
        if lock and self.engine.dialect.name != "sqlite":
            q = q.with_for_update()
        total, spent = conn.execute(q).one()
        return float(total), float(spent)

    def _contacts_of(self, conn: Connection, customer_ids: Sequence[str]) -> dict[str, tuple[int, datetime | None]]:
        rows = conn.execute(
            select(decisions.c.customer_id, func.count(decisions.c.id), func.max(decisions.c.decided_at))
            .where(decisions.c.campaign == self.campaign, decisions.c.contact.is_(True),
                   decisions.c.customer_id.in_(set(customer_ids)))
            .group_by(decisions.c.customer_id)
        ).all()
        return {r[0]: (int(r[1]), r[2]) for r in rows}

    @staticmethod
    def _days_since(last: datetime | None, now: datetime) -> float:
        return (now - _utc(last)).total_seconds() / 86400.0 if last is not None else float(NEVER_CONTACTED)

    def states(self, customer_ids: list[str], now: datetime) -> tuple[dict[str, DecisionState], float, float]:
        """Decision state of each customer, plus the campaign's (budget_total, budget_remaining)."""
        with self.engine.connect() as conn:
            return self._states(conn, customer_ids, now)

    def read(self, customer_ids: list[str], request_ids: Sequence[str | None], now: datetime
             ) -> tuple[dict[str, Recorded], dict[str, DecisionState], float, float]:
        """:meth:`replay` and :meth:`states` in one connection: what a request reads before it decides."""
        with self.engine.connect() as conn:
            recorded = self._recorded(conn, [r for r in request_ids if r])
            return (recorded, *self._states(conn, customer_ids, now))

    def _states(self, conn: Connection, customer_ids: list[str], now: datetime
                ) -> tuple[dict[str, DecisionState], float, float]:
        now = _utc(now)
        total, spent = self._budget(conn)
        seen = self._contacts_of(conn, customer_ids)
        remaining = max(0.0, total - spent)
        out: dict[str, DecisionState] = {}
        for cid in customer_ids:
            count, last = seen.get(cid, (0, None))
            days = self._days_since(last, now)
            out[cid] = DecisionState(days, count, days < self.rules.cooldown_days, remaining)
        return out, total, remaining

    def _recorded(self, conn: Connection, request_ids: Sequence[str]) -> dict[str, Recorded]:
        if not request_ids:
            return {}
        rows = conn.execute(select(decisions.c.request_id, decisions.c.customer_id, decisions.c.response,
                                   decisions.c.audit).where(decisions.c.request_id.in_(set(request_ids)))).all()
        return {r[0]: Recorded(r[1], json.loads(r[2]) if r[2] else response_from_audit(json.loads(r[3])))
                for r in rows}

    def replay(self, request_ids: Sequence[str | None]) -> dict[str, Recorded]:
        """Responses recorded earlier under these ids (with the customer each id belongs to)."""
        ids = [r for r in request_ids if r]
        with self.engine.connect() as conn:
            return self._recorded(conn, ids)

    # ------------------------------------------------------------------ the one write
    def commit(self, bookings: Sequence[Booking], now: datetime,
               also: Callable[[Connection, list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """Record a batch of decisions in one transaction; return the responses as committed.

        ``also(conn, committed)`` runs last inside the same transaction (the inference log is
        written there), so what it writes stands or falls with the bookings.

        For each booking in order: a ``request_id`` already recorded for the same customer returns
        that response (marked ``replayed``) and books nothing; for another customer the whole batch
        is rolled back with :class:`RequestConflict`. A contact is re-checked against fatigue,
        cooldown and budget inside the transaction; if refused, the response becomes "no contact"
        (message removed, reason in ``warnings``). Then the row is written: the contact's booking and
        its response together. Records with neither a contact nor a ``request_id`` write nothing.
        """
        now = _utc(now)
        out: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            total, spent = self._budget(conn, lock=True)
            recorded = self._recorded(conn, [b.request_id for b in bookings if b.request_id])
            seen = self._contacts_of(conn, [b.customer_id for b in bookings])
            conflicts: dict[str, str] = {}
            booked_cost = 0.0
            for i, b in enumerate(bookings):
                prior = recorded.get(b.request_id) if b.request_id else None
                if prior is not None:
                    if prior.customer_id != b.customer_id:
                        conflicts[f"records[{i}].request_id"] = "already used for another customer; use a new id"
                        continue
                    out.append(as_replayed(prior.response))
                    continue
                response = b.response
                contact = bool(response["decision"]["contact"])
                if contact:
                    count, last = seen.get(b.customer_id, (0, None))
                    reason = self._refusal(count, self._days_since(last, now), total - spent - booked_cost, b.cost)
                    if reason:
                        response, contact = _not_contacted(response, reason, b.retention_prob_if_refused), False
                    else:
                        seen[b.customer_id] = (count + 1, now)
                        booked_cost += b.cost
                if not contact and not b.request_id:
                    out.append(response)
                    continue
                conn.execute(insert(decisions).values(
                    request_id=b.request_id, campaign=self.campaign, customer_id=b.customer_id, decided_at=now,
                    contact=contact, offer_level=int(response["decision"]["offer_level"]),
                    reserved_cost=b.cost if contact else 0.0, response=json.dumps(response, default=str),
                    audit=json.dumps(audit_record(response), default=str)))
                if b.request_id:
                    recorded[b.request_id] = Recorded(b.customer_id, response)  # a repeat later in this batch
                out.append(response)
            if conflicts:
                raise RequestConflict(conflicts)  # leaving the block rolls the whole batch back
            if booked_cost:
                conn.execute(update(campaigns).where(campaigns.c.name == self.campaign)
                             .values(budget_spent=campaigns.c.budget_spent + booked_cost))
            if also is not None:
                also(conn, out)
        return out

    def _refusal(self, count: int, days: float, left: float, cost: float) -> str:
        if count >= self.rules.fatigue_cap:
            return f"fatigue cap reached ({count} contacts)"
        if days < self.rules.cooldown_days:
            return f"inside cooldown ({days:.1f} days since last contact)"
        if cost > left + 1e-9:
            return f"budget exhausted ({max(0.0, left):.2f} left, {cost:.2f} needed)"
        return ""

    def prune(self, now: datetime | None = None) -> int:
        """Delete full responses older than the retention period; return how many rows changed.

        Contacts keep their audit record (the campaign's rules need them); rows that booked nothing
        are deleted.
        """
        cutoff = _utc(now or datetime.now(UTC)) - self.retention
        with self.engine.begin() as conn:
            gone = conn.execute(delete(decisions).where(decisions.c.contact.is_(False),
                                                        decisions.c.decided_at < cutoff)).rowcount
            cleared = conn.execute(update(decisions).where(decisions.c.decided_at < cutoff,
                                                           decisions.c.response.is_not(None))
                                   .values(response=None)).rowcount
        return int(gone or 0) + int(cleared or 0)

    def summary(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            total, spent = self._budget(conn)
            n = conn.execute(select(func.count(decisions.c.id)).where(decisions.c.campaign == self.campaign,
                                                                      decisions.c.contact.is_(True))).scalar()
        return {"campaign": self.campaign, "budget_total": total, "budget_spent": spent, "contacts": int(n)}


def as_replayed(response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "metadata": {**response["metadata"], "replayed": True}}


def _not_contacted(response: dict[str, Any], reason: str, retention_prob: float) -> dict[str, Any]:
    meta = response["metadata"]
    return {**response, "decision": {**response["decision"], "contact": False, "offer_level": 0,
                                     "offer_percentage": 0, "estimated_retention_prob": retention_prob},
            "message": None, "message_source": None, "safety": {"passed": None, "violations": [], "send_at": None},
            "metadata": {**meta, "expected_value": 0.0,
                         "warnings": [*meta["warnings"], f"contact not recorded: {reason}"]}}
