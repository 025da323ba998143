"""Benchmark: contact-ledger throughput, sqlite vs a real PostgreSQL server, under concurrent writers.

Usage (about two minutes on 2 cores; starts and deletes its own throwaway Postgres cluster):

    .venv/bin/python benchmarks/ledger.py [--processes 1,4] [--threads 4] [--requests 2000] [--batch 1,50]

Each configuration starts ``processes`` worker processes with ``threads`` threads each; every thread
has its own engine (as a serving worker has) and commits decision batches of ``batch`` records through
:meth:`ContactLedger.commit` — the one write a served request makes — against one campaign budget,
with customers drawn from a pool of 5,000 so that some commits are refused (cooldown, fatigue) and
some request ids repeat. Throughput is decisions committed per second of wall time (the slowest
process); the invariants (budget, fatigue cap, one row per request id) are checked after every run.

Printed: the CPU, the Postgres version, then one line per backend x configuration. The figures depend
on the machine and on what else runs on it: quote them with the CPU and "contended" when it was.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import random
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from retention.cloud.postgres import LocalPostgres
from retention.policy.guard import GuardRules
from retention.serving.ledger import Booking, ContactLedger

RULES = GuardRules(fatigue_cap=3, cooldown_days=7, contact_cost=0.1)
NOW = datetime(2026, 11, 25, 10, tzinfo=UTC)


def _response(cid: str, rid: str) -> dict:
    return {"customer_id": cid, "request_id": rid,
            "decision": {"contact": True, "offer_level": 1, "offer_percentage": 5, "delay_days": 0,
                         "estimated_retention_prob": 0.9},
            "message": "Hi, a message.", "message_source": "template",
            "safety": {"passed": True, "violations": [], "send_at": None},
            "metadata": {"churn_risk": 0.5, "accept_prob": [0.1] * 4, "expected_value": 1.0, "model_versions": {},
                         "warnings": [], "dry_run": False, "replayed": False}}


def _worker(url: str, proc: int, threads: int, per_thread: int, batch: int, budget: float,
            start_at: float) -> tuple[float, float]:
    """Open one engine per thread, wait until ``start_at`` (wall clock), commit; return (first, last) time."""
    ledgers = [ContactLedger(url, RULES, budget=budget) for _ in range(threads)]
    plans = []
    for t in range(threads):
        rng = random.Random(proc * 1000 + t)
        plan = []
        for b in range(per_thread // batch):
            day = rng.choice((0, 8, 16, 24))
            bookings = []
            for i in range(batch):
                cid = f"c{rng.randrange(5000)}"
                rid = f"p{proc}-t{t}-{b}-{i}" if rng.random() > 0.05 else f"dup-{rng.randrange(200)}-{cid}"
                bookings.append(Booking(cid, rid, _response(cid, rid), 2.0))
            plan.append((bookings, NOW + timedelta(days=day)))
        plans.append(plan)

    def body(t: int) -> None:
        for bookings, when in plans[t]:
            ledgers[t].commit(bookings, when)

    time.sleep(max(0.0, start_at - time.time()))  # every process starts committing at the same moment
    first = time.time()
    pool = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    last = time.time()
    for ledger in ledgers:
        ledger.engine.dispose()
    return first, last


def run(url: str, processes: int, threads: int, requests: int, batch: int) -> tuple[float, dict]:
    budget = requests * 1.0  # about half the worst-case demand: the budget runs out during the run
    ContactLedger(url, RULES, budget=budget).engine.dispose()
    per_thread = max(batch, requests // (processes * threads))
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes) as pool:
        start_at = time.time() + 8.0  # after the workers' imports
        spans = pool.starmap(_worker, [(url, p, threads, per_thread, batch, budget, start_at)
                                       for p in range(processes)])
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    summary = ContactLedger(url, RULES, budget=budget).summary()
    assert summary["budget_spent"] <= budget + 1e-6, summary
    n = processes * threads * (per_thread // batch) * batch
    return n / wall, summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", default="1,4")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--batch", default="1,50")
    args = p.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}, {mp.cpu_count()} cores")
    with LocalPostgres() as pg, tempfile.TemporaryDirectory() as tmp:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="postgres")
        print(conn.server_version and f"PostgreSQL {conn.server_version // 10000}.{conn.server_version % 10000} "
              "(fsync off: a throwaway test cluster)")
        conn.close()
        print(f"{'backend':9s} {'procs':>5s} {'threads':>7s} {'batch':>5s} {'decisions/s':>12s} {'contacts':>9s}")
        n = 0
        for procs in (int(x) for x in args.processes.split(",")):
            for batch in (int(x) for x in args.batch.split(",")):
                for backend in ("sqlite", "postgres"):
                    n += 1
                    url = (f"sqlite:///{tmp}/ledger{n}.db" if backend == "sqlite"
                           else pg.create_database(f"bench{n}"))
                    rate, summary = run(url, procs, args.threads, args.requests, batch)
                    print(f"{backend:9s} {procs:5d} {args.threads:7d} {batch:5d} {rate:12.0f} "
                          f"{summary['contacts']:9d}", flush=True)


if __name__ == "__main__":
    main()
