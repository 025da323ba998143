"""A 200-request burst with repeated request ids, a ``kill -9`` in the middle, a restart and a replay.

Against a real `mlflow models serve` and a sqlite ledger. What must hold afterwards: no overspend,
no customer contacted twice inside the cooldown, no booking without its committed response, one
answer per request id (before the crash, during the burst and on replay alike), and no answer
carrying another customer's data. The inference log, written in the same transaction, agrees with
the ledger afterwards.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from retention.policy.guard import GuardRules
from retention.serving.ledger import ContactLedger
from tests.integration.conftest import start_server, stop_server

pytestmark = pytest.mark.integration
BUDGET = 400.0
CUSTOMERS = 60
NAMES = ("Maria", "James", "Aisha", "Chen", "Olivia", "Mateo", "Priya", "Noah", "Fatima", "Liam")
BASE = {"gender": "Female", "SeniorCitizen": 0, "Partner": "Yes", "Dependents": "No", "tenure": 2,
        "PhoneService": "Yes", "MultipleLines": "No", "InternetService": "Fiber optic", "OnlineSecurity": "No",
        "OnlineBackup": "No", "DeviceProtection": "No", "TechSupport": "No", "StreamingTV": "Yes",
        "StreamingMovies": "Yes", "Contract": "Month-to-month", "PaperlessBilling": "Yes",
        "PaymentMethod": "Electronic check", "MonthlyCharges": 90.0, "TotalCharges": 180.0}


def _record(k: int) -> dict:
    """Request k of the burst: 120 distinct ids over 60 customers; ids 0-79 are sent a second time."""
    rid = k if k < 120 else k - 120
    cid = rid % CUSTOMERS
    return {**BASE, "customer_id": f"crash-{cid}", "name": NAMES[cid % len(NAMES)], "request_id": f"crash-req-{rid}",
            "MonthlyCharges": 60.0 + cid}


def _post(port: int, record: dict) -> tuple[int, dict] | None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                 data=json.dumps({"dataframe_records": [record]}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read())["predictions"][0]
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
    except OSError:  # the server was killed: no answer
        return None


def test_kill_minus_nine_mid_burst_leaves_the_ledger_consistent(bundle):
    cfg = bundle.cfg
    url = f"sqlite:///{bundle.home / 'crash-ledger.db'}"
    rules = GuardRules(cfg.env.fatigue_cap, cfg.env.cooldown_days, cfg.env.contact_cost)
    ledger = ContactLedger(url, rules, budget=BUDGET)  # creates the campaign with this budget first
    port, proc = start_server(bundle, url)
    # 200 requests; the repeats of ids 0-79 are interleaved so that copies are in flight together
    order = [k for pair in zip(range(80), range(120, 200), strict=True) for k in pair] + list(range(80, 120))
    answers: dict[str, list[dict]] = defaultdict(list)
    done = threading.Semaphore(0)

    def send(k: int):
        result = _post(port, _record(k))
        done.release()
        return k, result

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(send, k) for k in order]
            for _ in range(70):  # let about a third of the burst be answered, then crash
                done.acquire(timeout=120)
            stop_server(proc, signal.SIGKILL)
            results = [f.result() for f in futures]
    finally:
        stop_server(proc, signal.SIGKILL)
    answered = [(k, r) for k, r in results if r is not None]
    assert 0 < len(answered) < len(order), "the crash should land in the middle of the burst"
    for k, (status, body) in answered:
        assert status == 200, body
        answers[_record(k)["request_id"]].append(body)

    port, proc = start_server(bundle, url)  # restart on the same ledger, then replay every id
    try:
        time.sleep(0.5)
        for k in range(120):
            status, body = _post(port, _record(k))
            assert status == 200, body
            answers[_record(k)["request_id"]].append(body)
    finally:
        stop_server(proc)

    for k in range(120):
        rec, got = _record(k), answers[_record(k)["request_id"]]
        first = got[0]
        for other in got[1:]:  # one answer per request id
            assert (other["decision"], other["message"]) == (first["decision"], first["message"]), rec["request_id"]
        for body in got:  # nobody else's data
            assert body["customer_id"] == rec["customer_id"].upper()
            if body["message"]:
                assert rec["name"] in body["message"]
                assert not any(n in body["message"] for n in NAMES if n != rec["name"])

    summary = ledger.summary()
    assert summary["budget_spent"] <= BUDGET + 1e-9
    with ledger.engine.connect() as conn:
        per_customer = conn.exec_driver_sql(
            "SELECT customer_id, COUNT(*) FROM decisions WHERE contact GROUP BY customer_id").all()
        unbacked = conn.exec_driver_sql("SELECT COUNT(*) FROM decisions WHERE contact AND response IS NULL").scalar()
        booked = conn.exec_driver_sql("SELECT COALESCE(SUM(reserved_cost), 0) FROM decisions WHERE contact").scalar()
        # the inference log is written in the booking's transaction: every recorded decision has its log row
        unlogged = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM decisions d WHERE NOT EXISTS (SELECT 1 FROM inference_log l "
            "WHERE l.request_id = d.request_id AND NOT l.replayed)").scalar()
        logged_contacts = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM inference_log WHERE contact AND NOT replayed AND NOT dry_run").scalar()
        leaked = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM inference_log WHERE customer_key LIKE 'CRASH-%'").scalar()
    assert all(n == 1 for _, n in per_customer)  # nobody twice inside the cooldown
    assert unbacked == 0  # every booking has its committed response
    assert booked == pytest.approx(summary["budget_spent"])
    assert unlogged == 0 and logged_contacts == len(per_customer)  # log and ledger agree after the crash
    assert leaked == 0  # the log holds keyed hashes, not customer ids
    contacted = {a[0]["customer_id"] for a in answers.values() if a[0]["decision"]["contact"]}
    assert contacted == {c for c, _ in per_customer}  # a booking iff a committed response says contact
