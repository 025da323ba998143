"""The contact ledger under concurrency, on sqlite AND on a real PostgreSQL server.

Several processes, each with several threads and its own engine (as serving workers on several
nodes would have), send hundreds of decision requests that compete for one campaign budget and
for the same customers, at different decision times, with request ids replayed across processes.
Afterwards the database itself is checked: the budget is never overspent, nobody is contacted past
the fatigue cap or twice inside the cooldown, and a replayed ``request_id`` booked nothing more.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from retention.policy.guard import GuardRules
from retention.serving.ledger import Booking, ContactLedger, create_schema, decisions

RULES = GuardRules(fatigue_cap=2, cooldown_days=7, contact_cost=0.1)
NOW = datetime(2026, 11, 25, 10, tzinfo=UTC)
BUDGET = 150.0
DAYS = (0, 3, 8, 16, 24)  # decision times: some inside a cooldown of each other, some not


def _response(cid: str, rid: str | None, level: int = 1, contact: bool = True) -> dict:
    return {"customer_id": cid, "request_id": rid,
            "decision": {"contact": contact, "offer_level": level, "offer_percentage": 5 * level, "delay_days": 0,
                         "estimated_retention_prob": 0.9},
            "message": "Hi, a message." if contact else None, "message_source": "template",
            "safety": {"passed": True, "violations": [], "send_at": None},
            "metadata": {"churn_risk": 0.5, "accept_prob": [0.1] * 4, "expected_value": 1.0,
                         "model_versions": {}, "warnings": [], "dry_run": False, "replayed": False}}


def _requests(worker: int, n: int, seed: int) -> list[tuple[str, str, int, float]]:
    """(request_id, customer_id, day, cost): ~1 in 5 ids is shared with every other worker (a replay)."""
    rng = random.Random(seed * 1000 + worker)
    out = []
    for j in range(n):
        if rng.random() < 0.2:
            k = rng.randrange(30)  # a shared id always means the same customer, time and cost
            out.append((f"dup-{k}", f"c{k % 40}", DAYS[k % len(DAYS)], 1.0 + (k % 3)))
        else:
            out.append((f"w{worker}-{j}", f"c{rng.randrange(40)}", rng.choice(DAYS), rng.choice((1.0, 2.0, 3.0))))
    return out


def _thread_body(ledger: ContactLedger, requests, answers: list) -> None:
    for rid, cid, day, cost in requests:
        got = ledger.commit([Booking(cid, rid, _response(cid, rid), cost, 0.4)], NOW + timedelta(days=day))[0]
        answers.append((rid, cid, bool(got["decision"]["contact"]), bool(got["metadata"].get("replayed"))))


def process_worker(url: str, proc: int, threads: int, per_thread: int, seed: int) -> list:
    """One serving process: its own engine, ``threads`` threads sharing it."""
    ledger = ContactLedger(url, RULES, budget=BUDGET)
    answers: list = []
    pool = [threading.Thread(target=_thread_body,
                             args=(ledger, _requests(proc * 100 + t, per_thread, seed), answers))
            for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    ledger.engine.dispose()
    return answers


def _check_invariants(url: str, answers: list, n_requests: int) -> dict:
    ledger = ContactLedger(url, RULES, budget=BUDGET)
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(decisions.c.request_id, decisions.c.customer_id, decisions.c.decided_at,
                                   decisions.c.contact, decisions.c.reserved_cost)).all()
    summary = ledger.summary()
    assert len(answers) == n_requests, "every request got an answer"
    # the budget: never overspent, and the spend is exactly what the contact rows reserved
    assert summary["budget_spent"] <= BUDGET + 1e-9, summary
    assert summary["budget_spent"] == pytest.approx(sum(r.reserved_cost for r in rows if r.contact))
    # fatigue cap and cooldown, per customer, from the rows themselves
    times = defaultdict(list)
    for r in rows:
        if r.contact:
            times[r.customer_id].append(r.decided_at if r.decided_at.tzinfo else r.decided_at.replace(tzinfo=UTC))
    for cid, ts in times.items():
        ts.sort()
        assert len(ts) <= RULES.fatigue_cap, (cid, ts)
        assert all((b - a) >= timedelta(days=RULES.cooldown_days) for a, b in zip(ts, ts[1:], strict=False)), (cid, ts)
    # idempotency: one row per request id, and every answer to a replayed id is the recorded one
    ids = [r.request_id for r in rows]
    assert len(ids) == len(set(ids))
    recorded = {r.request_id: r.contact for r in rows}
    by_id = defaultdict(set)
    for rid, _cid, contact, _replayed in answers:
        by_id[rid].add(contact)
    assert set(by_id) == set(recorded)
    assert all(by_id[rid] == {recorded[rid]} for rid in recorded), "a replay answered differently"
    replays = sum(1 for *_, replayed in answers if replayed)
    assert replays == len(answers) - len(recorded)  # everything beyond the first answer per id was a replay
    assert summary["contacts"] == sum(recorded.values())
    return {"contacts": summary["contacts"], "spent": summary["budget_spent"], "replays": replays}


def test_threads_and_processes_never_overspend_double_contact_or_rebook(ledger_url):
    """4 processes x 4 threads x 15 requests = 240 concurrent requests."""
    ContactLedger(ledger_url, RULES, budget=BUDGET)  # create the schema once, as a deployment would
    procs, threads, per_thread = 4, 4, 15
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        parts = pool.starmap(process_worker, [(ledger_url, p, threads, per_thread, 7) for p in range(procs)])
    answers = [a for part in parts for a in part]
    out = _check_invariants(ledger_url, answers, procs * threads * per_thread)
    # the workload really exercised the rules: some contacts, some refusals, some replays
    assert out["contacts"] > 10 and out["replays"] > 10
    assert out["contacts"] < len({a[0] for a in answers})


def test_many_threads_compete_for_a_small_budget(ledger_url):
    """24 threads, each with its own engine, book 5 customers: each is contacted exactly once."""
    ContactLedger(ledger_url, RULES, budget=50.0)
    results = []

    def worker(i):
        own = ContactLedger(ledger_url, RULES, budget=50.0)
        for j in range(10):
            cid = f"c{j % 5}"
            got = own.commit([Booking(cid, f"w{i}-{j}", _response(cid, f"w{i}-{j}"), 3.0)], NOW)[0]
            results.append((cid, got["decision"]["contact"]))
        own.engine.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = ContactLedger(ledger_url, RULES, budget=50.0).summary()
    assert summary["budget_spent"] <= 50.0 + 1e-9
    assert sorted(c for c, contacted in results if contacted) == ["c0", "c1", "c2", "c3", "c4"]
    assert summary["contacts"] == 5


def test_the_same_request_sent_twice_at_once_gets_one_answer(ledger_url):
    ContactLedger(ledger_url, RULES, budget=50.0)
    answers: dict[str, list] = {f"r{k}": [] for k in range(10)}

    def worker():
        own = ContactLedger(ledger_url, RULES, budget=50.0)
        for k in range(10):
            rid = f"r{k}"
            answers[rid].append(own.commit([Booking(f"c{k}", rid, _response(f"c{k}", rid), 3.0)], NOW)[0]["decision"])
        own.engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(a) == 2 and a[0] == a[1] and a[0]["contact"] for a in answers.values())
    assert ContactLedger(ledger_url, RULES, budget=50.0).summary()["contacts"] == 10



def test_workers_starting_together_on_an_empty_database_all_create_the_schema(ledger_url):
    """Spark executors / serving workers create the tables at the same moment on an empty database.

    On Postgres a plain ``metadata.create_all`` from 8 connections released together fails with a
    unique violation on ``pg_type`` in practice every time; :func:`create_schema` must not.
    """
    engines = [ContactLedger._engine(ledger_url) for _ in range(8)]
    for e in engines:
        e.connect().close()  # connected before the barrier, so the DDL itself races
    barrier, errors = threading.Barrier(len(engines)), []

    def go(engine):
        barrier.wait()
        try:
            create_schema(engine)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=go, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert errors == []
    assert ContactLedger(ledger_url, RULES, budget=BUDGET).summary()["contacts"] == 0


def test_numpy_values_from_the_service_are_stored(ledger_url):
    """The service hands numpy scalars (costs, levels, scores); psycopg2 once wrote them as `np.float64(...)`."""
    import numpy as np

    ledger = ContactLedger(ledger_url, RULES, budget=BUDGET)
    response = _response("n1", "np-1", level=1)
    response["decision"]["offer_level"] = np.int64(2)
    response["metadata"]["churn_risk"] = np.float64(0.7)
    got = ledger.commit([Booking("n1", "np-1", response, np.float64(2.5), np.float32(0.4))], NOW)[0]
    assert got["decision"]["contact"]
    assert ledger.summary()["budget_spent"] == pytest.approx(2.5)
    with ledger.engine.connect() as conn:
        assert conn.execute(select(decisions.c.offer_level, decisions.c.reserved_cost)).one() == (2, 2.5)
