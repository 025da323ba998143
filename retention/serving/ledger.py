"""The contact ledger: every contact, its offer and the campaign budget, in one SQL database.

The decision state (days since last contact, fatigue count, cooldown, budget remaining) comes from
here at serving time. Requests never supply it. :meth:`ContactLedger.reserve` checks and records a
contact **atomically**:

* sqlite (the default, ``sqlite:///ledger.db``): WAL journal, and every write transaction starts
  with ``BEGIN IMMEDIATE``, which takes the database's write lock. So concurrent reservations from
  several threads or worker processes are serialised; a busy timeout makes them wait, not fail.
* any other SQLAlchemy URL (e.g. Postgres for several nodes): the transaction locks the campaign
  row with ``SELECT ... FOR UPDATE`` before checking, which serialises reservations per campaign.

A reservation books the **worst-case** cost (the message plus the full discount, as if accepted),
so the budget cannot be overspent whatever customers answer. It is idempotent by ``request_id``:
a repeated request gets the recorded contact back and books nothing new.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from retention.policy.guard import NEVER_CONTACTED, GuardRules

metadata = MetaData()
campaigns = Table(
    "campaigns", metadata,
    Column("name", String(100), primary_key=True),
    Column("budget_total", Float, nullable=False),
    Column("budget_spent", Float, nullable=False, default=0.0),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
contacts = Table(
    "contacts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(200), unique=True, nullable=True),
    Column("campaign", String(100), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("contacted_at", DateTime(timezone=True), nullable=False),
    Column("offer_level", Integer, nullable=False),
    Column("reserved_cost", Float, nullable=False),
    Column("response", Text, nullable=True),  # JSON of the decision returned, for idempotent replays
)


@dataclass(frozen=True)
class DecisionState:
    """The fields shared with the simulator (see DESIGN.md)."""

    days_since_contact: float
    fatigue_count: int
    cooldown_active: bool
    budget_remaining: float


@dataclass(frozen=True)
class Reservation:
    status: str  # "reserved" | "duplicate" | "refused"
    reason: str = ""
    response: dict[str, Any] | None = None


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


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class ContactLedger:
    """Contacts and budget of one campaign; see the module docstring for the guarantees."""

    def __init__(self, url: str, rules: GuardRules, campaign: str = "default", budget: float = 1000.0):
        self.url, self.rules, self.campaign = url, rules, campaign
        self.engine = self._engine(url)
        metadata.create_all(self.engine)
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

    def _customer(self, conn: Connection, customer_id: str, now: datetime) -> tuple[int, float]:
        row = conn.execute(
            select(func.count(contacts.c.id), func.max(contacts.c.contacted_at))
            .where(contacts.c.campaign == self.campaign, contacts.c.customer_id == customer_id)
        ).one()
        count, last = int(row[0]), row[1]
        days = (now - _utc(last)).total_seconds() / 86400.0 if last is not None else float(NEVER_CONTACTED)
        return count, days

    def states(self, customer_ids: list[str], now: datetime) -> tuple[dict[str, DecisionState], float, float]:
        """Decision state of each customer, plus the campaign's (budget_total, budget_remaining)."""
        now = _utc(now)
        out: dict[str, DecisionState] = {}
        with self.engine.connect() as conn:
            total, spent = self._budget(conn)
            rows = conn.execute(
                select(contacts.c.customer_id, func.count(contacts.c.id), func.max(contacts.c.contacted_at))
                .where(contacts.c.campaign == self.campaign, contacts.c.customer_id.in_(set(customer_ids)))
                .group_by(contacts.c.customer_id)
            ).all()
        seen = {r[0]: (int(r[1]), r[2]) for r in rows}
        remaining = max(0.0, total - spent)
        for cid in customer_ids:
            count, last = seen.get(cid, (0, None))
            days = (now - _utc(last)).total_seconds() / 86400.0 if last is not None else float(NEVER_CONTACTED)
            out[cid] = DecisionState(days, count, days < self.rules.cooldown_days, remaining)
        return out, total, remaining

    def replay(self, request_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Recorded responses of earlier requests with these ids."""
        ids = [r for r in request_ids if r]
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(contacts.c.request_id, contacts.c.response)
                                .where(contacts.c.request_id.in_(ids))).all()
        return {r[0]: json.loads(r[1]) for r in rows if r[1]}

    # ------------------------------------------------------------------ the one write
    def reserve(self, customer_id: str, offer_level: int, cost: float, now: datetime,
                request_id: str | None = None, response: dict[str, Any] | None = None) -> Reservation:
        """Check fatigue, cooldown and budget for one contact and record it, atomically."""
        now = _utc(now)
        with self.engine.begin() as conn:
            total, spent = self._budget(conn, lock=True)
            if request_id:
                prior = conn.execute(select(contacts.c.response).where(contacts.c.request_id == request_id)).first()
                if prior is not None:
                    return Reservation("duplicate", "request_id already recorded",
                                       json.loads(prior[0]) if prior[0] else None)
            count, days = self._customer(conn, customer_id, now)
            if count >= self.rules.fatigue_cap:
                return Reservation("refused", f"fatigue cap reached ({count} contacts)")
            if days < self.rules.cooldown_days:
                return Reservation("refused", f"inside cooldown ({days:.1f} days since last contact)")
            if spent + cost > total + 1e-9:
                return Reservation("refused", f"budget exhausted ({total - spent:.2f} left, {cost:.2f} needed)")
            conn.execute(insert(contacts).values(request_id=request_id or None, campaign=self.campaign,
                                                 customer_id=customer_id, contacted_at=now, offer_level=offer_level,
                                                 reserved_cost=cost,
                                                 response=json.dumps(response) if response is not None else None))
            conn.execute(update(campaigns).where(campaigns.c.name == self.campaign)
                         .values(budget_spent=campaigns.c.budget_spent + cost))
        return Reservation("reserved")

    def record_response(self, request_id: str, response: dict[str, Any]) -> None:
        """Store the full response of a recorded contact, so a repeated request gets it back verbatim."""
        with self.engine.begin() as conn:
            conn.execute(update(contacts).where(contacts.c.request_id == request_id)
                         .values(response=json.dumps(response, default=str)))

    def summary(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            total, spent = self._budget(conn)
            n = conn.execute(select(func.count(contacts.c.id)).where(contacts.c.campaign == self.campaign)).scalar()
        return {"campaign": self.campaign, "budget_total": total, "budget_spent": spent, "contacts": int(n)}
