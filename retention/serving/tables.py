"""The tables of the serving database: the ledger's (campaigns, decisions) and the inference log's.

One :class:`~sqlalchemy.MetaData` holds them all, so :func:`create_schema` makes every table the
ledger's transaction writes (bookings and the inference log together, see
:mod:`retention.serving.ledger`) in one call. The ledger and the log import their tables from here;
neither imports the other.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text, func, inspect, select
from sqlalchemy.engine import Connection, Engine

from retention.tabular.features import RISK_CATEGORICAL, RISK_NUMERIC

OFFERS = 4
MAX_ID_CHARS = 200

metadata = MetaData()
campaigns = Table(
    "campaigns", metadata,
    Column("name", String(100), primary_key=True),
    Column("budget_total", Float, nullable=False),
    Column("budget_spent", Float, nullable=False, default=0.0),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(MAX_ID_CHARS), unique=True, nullable=True),
    Column("campaign", String(100), nullable=False, index=True),
    Column("customer_id", String(MAX_ID_CHARS), nullable=False, index=True),
    Column("decided_at", DateTime(timezone=True), nullable=False, index=True),
    Column("contact", Boolean, nullable=False),
    Column("offer_level", Integer, nullable=False),
    Column("reserved_cost", Float, nullable=False),
    Column("response", Text, nullable=True),  # the full response, until the retention period ends
    Column("audit", Text, nullable=False),  # the response without name or message text
)


inference_log = Table(
    "inference_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("logged_at", DateTime(timezone=True), nullable=False, index=True),
    Column("request_id", String(200), nullable=True),
    Column("customer_key", String(64), nullable=False, index=True),
    Column("bundle_run_id", String(64), nullable=True),
    Column("model_versions", Text, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("replayed", Boolean, nullable=False),
    *[Column(c, Float, nullable=True) for c in RISK_NUMERIC],
    *[Column(c, String(40), nullable=True) for c in RISK_CATEGORICAL],
    Column("churn_risk", Float, nullable=False),
    *[Column(f"accept_{k}", Float, nullable=False) for k in range(OFFERS)],
    Column("contact", Boolean, nullable=False),
    Column("offer_level", Integer, nullable=False),
    Column("delay_days", Integer, nullable=False),
    Column("message_source", String(20), nullable=True),
    Column("shield_passed", Boolean, nullable=True),
    Column("shield_violations", Text, nullable=False),  # JSON {rule: count}
    # what off-policy evaluation needs (retention.serving.assignment); null in rows logged before them
    Column("assignment", String(10), nullable=True),  # holdout | explore | exploit
    Column("propensity", Float, nullable=True),  # probability of the arm taken
    Column("arm_probs", Text, nullable=True),  # JSON: probability of each arm (no contact, offer 0..3)
    Column("arm_mask", Text, nullable=True),  # JSON: the arms the guard allowed
    Column("arm_values", Text, nullable=True),  # JSON: predicted value of each arm
    Column("policy_contact", Boolean, nullable=True),  # the policy's arm after the guard (holdout: the ghost)
    Column("policy_offer", Integer, nullable=True),
    Column("proposed_contact", Boolean, nullable=True),  # the policy's proposal before the guard
    Column("proposed_offer", Integer, nullable=True),
    Column("guard_override", Boolean, nullable=True),
    Column("observation", Text, nullable=True),  # JSON: the policy's state inputs
)
log_secrets = Table(
    "log_secrets", metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(128), nullable=False),
)

SCHEMA_LOCK_KEY = 7_311_982_417  # any constant: the Postgres advisory lock that serialises schema creation


def create_schema(engine: Engine) -> None:
    """Create the ledger's and the inference log's tables if missing; safe to race.

    Postgres's ``CREATE TABLE IF NOT EXISTS`` is not safe when several processes create the same
    table at once (one fails with a unique violation on ``pg_type``), as Spark executors or serving
    workers starting together on an empty database do. So on Postgres the creation runs under a
    transaction-scoped advisory lock. sqlite serialises writers itself (``BEGIN IMMEDIATE``).
    """
    if engine.dialect.name != "postgresql":
        metadata.create_all(engine)
        with engine.begin() as conn:
            add_missing_columns(conn)
        return
    with engine.begin() as conn:
        conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
        metadata.create_all(conn)
        add_missing_columns(conn)


def add_missing_columns(conn: Connection) -> list[str]:
    """Add the nullable columns a table gained since its database was made (``ALTER TABLE ... ADD``).

    ``create_all`` makes missing tables only. A ledger database made by an earlier version keeps
    its rows; its new columns stay null there. Returns the ``table.column`` names added.
    """
    added = []
    found = inspect(conn)
    for table in metadata.sorted_tables:
        if not found.has_table(table.name):
            continue
        have = {c["name"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                added.append(f"{table.name}.{column.name}")
    return added
