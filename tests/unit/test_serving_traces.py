"""Traces of served decisions: one span per decision, findable by request id and keyed customer hash,
never holding a raw id, a name or a message; sampling; the shield verdict of each message source."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pandas as pd
import pytest

from retention.messaging.sampling import GREEDY
from retention.serving import inference_log
from tests.unit.test_monitoring import make_service as _make_service


@pytest.fixture
def customers() -> pd.DataFrame:
    from tests.conftest import _mirror

    df = pd.read_csv(_mirror() / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv").head(60)
    df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce").fillna(0.0)
    return df.rename(columns={"customerID": "customer_id"}).drop(columns=["Churn"]).assign(
        name="Zoë O'Brien", with_message=True, dry_run=False)


def make_service(url: str):
    """The stand-in service with every request traced (the shipped default samples a share)."""
    service = _make_service(url)
    service.serving = dataclasses.replace(service.serving, tracing=True, trace_sampling=1.0)
    return service


def _traces():
    import mlflow

    mlflow.flush_trace_async_logging()
    exp = mlflow.get_experiment_by_name("retention-test")
    return mlflow.search_traces(locations=[exp.experiment_id], return_type="list")


def test_a_single_decision_has_its_own_span_findable_by_request_id_and_keyed_hash(tracking, customers):
    import mlflow

    service = make_service(f"sqlite:///{tracking / 'ledger.db'}")
    one = customers.head(1).assign(request_id="req-trace-1")
    out = service.decide(one, now=datetime(2026, 12, 2, 10, tzinfo=UTC))
    exp_id = mlflow.get_experiment_by_name("retention-test").experiment_id
    mlflow.flush_trace_async_logging()
    found = mlflow.search_traces(locations=[exp_id], filter_string="trace.client_request_id = 'req-trace-1'",
                                 return_type="list")
    assert len(found) == 1
    key = inference_log.customer_key(out["customer_id"].iloc[0], service._log_key())
    by_key = mlflow.search_traces(locations=[exp_id], filter_string=f"tags.`retention.customer_key` = '{key}'",
                                  return_type="list")
    assert [t.info.trace_id for t in by_key] == [found[0].info.trace_id]
    spans = [s for s in found[0].data.spans if s.name == "decision"]
    assert len(spans) == 1 and spans[0].attributes["customer_key"] == key
    assert spans[0].attributes["request_id"] == "req-trace-1"
    assert spans[0].attributes["shield_verdict"] == str(out["safety"].iloc[0].get("verdict"))
    text = found[0].to_json()
    raw = one["customer_id"].iloc[0]
    assert raw not in text and "Zoë" not in text and "O'Brien" not in text
    if isinstance(out["message"].iloc[0], str):
        assert out["message"].iloc[0][:20] not in text


def test_a_batch_has_one_span_per_decision_up_to_the_cap(tracking, customers):
    service = make_service(f"sqlite:///{tracking / 'ledger.db'}")
    service.serving = dataclasses.replace(service.serving, trace_max_decisions=25)
    service.decide(customers.head(40).assign(request_id=[f"b-{i}" for i in range(40)]))
    (trace,) = _traces()
    decisions = [s for s in trace.data.spans if s.name == "decision"]
    assert len(decisions) == 25
    root = next(s for s in trace.data.spans if s.name == "decide")
    assert root.attributes["decisions_not_spanned"] == 15 and root.attributes["records"] == 40
    assert {s.attributes["request_id"] for s in decisions} == {f"b-{i}" for i in range(25)}


def test_sampling_traces_the_stated_share_and_a_retry_the_same_way(tracking, customers):
    service = make_service(f"sqlite:///{tracking / 'ledger.db'}")
    service.serving = dataclasses.replace(service.serving, trace_sampling=0.25)
    reqs = [customers.iloc[[i % 60]].assign(request_id=f"s-{i}", dry_run=True) for i in range(200)]
    chosen = [service._traced(r) for r in reqs]
    assert 0.15 < sum(chosen) / 200 < 0.35
    assert chosen == [service._traced(r) for r in reqs]  # deterministic per request id
    for r in reqs[:40]:
        service.decide(r)
    assert len(_traces()) == sum(chosen[:40])
    service.serving = dataclasses.replace(service.serving, trace_sampling=0.0)
    service.decide(reqs[0])
    assert len(_traces()) == sum(chosen[:40])


def test_the_shield_verdict_names_what_was_sent_for_each_message_source(tracking, customers):
    """No generator: template_by_design; a generated text that passes: generated_passed; one that breaks
    a rule: generated_blocked (the template goes out); none written in time: template_no_text."""
    from retention.serving.service import Generator

    service = make_service(f"sqlite:///{tracking / 'ledger.db'}")
    req = customers.head(30).assign(dry_run=True)
    out = service.decide(req)
    sent = out[out["message"].notna()]
    assert len(sent) and {s["verdict"] for s in sent["safety"]} == {"template_by_design"}
    assert all(s["passed"] is None for s in sent["safety"])

    service.generator = Generator(model=None, tokenizer=None, max_new_tokens=8, batch_size=64, sampling=GREEDY)

    def fake_generate(facts, texts):  # stands in for the LLM only; the shield under test is the real one
        return [service.shield.template(f.name, f.offer_pct) if i % 2 == 0 else "WIN CASH NOW!!! click evil.com"
                for i, f in enumerate(facts)]

    service._generate = fake_generate
    out = service.decide(req.assign(with_message=True))
    verdicts = [s["verdict"] for s, m in zip(out["safety"], out["message"], strict=True) if m]
    assert {"generated_blocked", "generated_passed"} <= set(verdicts)
    blocked = [r for r in out.itertuples() if r.message and r.safety["verdict"] == "generated_blocked"]
    assert all(r.message_source == "template" and r.safety["passed"] is False for r in blocked)
    passed = [r for r in out.itertuples() if r.message and r.safety["verdict"] == "generated_passed"]
    assert all(r.message_source == "generator" and r.safety["passed"] is True for r in passed)
    service._generate = lambda facts, texts: texts  # the time budget ran out before any text
    out = service.decide(req.assign(with_message=True))
    assert {s["verdict"] for s, m in zip(out["safety"], out["message"], strict=True) if m} == {"template_no_text"}


def test_a_dead_tracking_store_cannot_fail_a_request(tmp_path, customers, monkeypatch):
    """Traces are exported in MLflow's background queue: with the tracking server unreachable, the
    decision still comes back whole and is booked; the export's failure is MLflow's log line, not ours."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    old = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri("http://127.0.0.1:9")  # nothing listens on the discard port
    mlflow.tracing.enable()
    try:
        service = make_service(f"sqlite:///{tmp_path / 'ledger.db'}")
        out = service.decide(customers.head(3).assign(request_id=["dead-1", "dead-2", "dead-3"]))
        assert len(out) == 3 and all(isinstance(d["contact"], bool) for d in out["decision"])
        booked = service.ledger.replay(["dead-1", "dead-2", "dead-3"])
        assert set(booked) == {r for r, d in zip(out["request_id"], out["decision"], strict=True)
                               if d["contact"] or r}
    finally:
        mlflow.set_tracking_uri(old)
