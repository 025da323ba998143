"""The decision service: everything the composite model does, without MLflow in the way.

For a batch of customer records:

1. validate and normalise the request (:mod:`retention.serving.schema`; bad input -> field errors);
2. answer repeated ``request_id`` values from the ledger (idempotency); an id recorded for another
   customer rejects the batch (:class:`~retention.serving.ledger.RequestConflict`);
3. score churn risk and acceptance of each offer with the champion tabular models;
4. read each customer's state (days since contact, fatigue, cooldown, budget) from the ledger;
5. ask the policy, then apply the **guard** (hard constraints) to its answer; then the
   **assignment** (:mod:`retention.serving.assignment`): the persistent holdout is never contacted,
   and with probability ε an arm the guard allows is drawn instead of the policy's. Every arm's
   probability is logged;
6. write messages in batches under a time budget and pass each through the **shield**. On a
   timeout, a generator fault or a block, and when the bundle has no champion generator, the
   approved template is sent. No unsafe message leaves;
7. unless ``dry_run``, commit the batch to the ledger in **one transaction**: each contact is
   re-checked and booked together with its response. A refusal (budget gone, a concurrent contact)
   turns that decision into "no contact", with a warning. Nothing is booked before this step, so a
   request that fails books nothing.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from retention.config import EnvConfig, ServingConfig
from retention.messaging.compose import write_messages
from retention.messaging.prompts import facts_from_record
from retention.messaging.sampling import Sampling
from retention.messaging.shield import Shield
from retention.offers import OFFER_PERCENT
from retention.policy.cohort import offer_costs
from retention.policy.env import OBS_COLUMNS, observation
from retention.policy.guard import GuardRules, action_mask, guard
from retention.serving import inference_log
from retention.serving.assignment import ARMS, EXPLORE, HOLDOUT, allowed_arms, arm_of, assign, in_holdout, unit_hashes
from retention.serving.ledger import Booking, ContactLedger, RequestConflict, as_replayed
from retention.serving.schema import allowed_categories, parse_request, unknown_fields_note
from retention.tabular.features import RISK_FEATURES, Calendar, UnseenCategoryWarning, offer_acceptance
from retention.tracking import span

log = logging.getLogger(__name__)
# the bundle's version entry for message-generator when no version passed its gate (templates only)
NO_CHAMPION_GENERATOR = "none (no champion: approved templates only)"
# safety.verdict: what was sent and why
GENERATED_PASSED = "generated_passed"  # the generated text passed the shield and is sent
GENERATED_BLOCKED = "generated_blocked"  # the generated text broke a rule: the approved template is sent
TEMPLATE_BY_DESIGN = "template_by_design"  # no generator in this bundle (or service): the template is sent
TEMPLATE_NO_TEXT = "template_no_text"  # no usable generated text (timeout, fault, no personal part): template


@dataclass
class Generator:
    model: Any
    tokenizer: Any
    max_new_tokens: int
    batch_size: int
    sampling: Sampling  # the serving decoder's (Sampling.of(ServingConfig)); GREEDY decodes greedily


class DecisionService:
    def __init__(self, risk_model, accept_model, policy, generator: Generator | None, shield: Shield,
                 env: EnvConfig, serving: ServingConfig, ledger: ContactLedger, versions: dict[str, str],
                 calendar: Calendar, categories: dict[str, set[str]] | None = None,
                 bundle_run_id: str | None = None):
        self.risk, self.accept, self.policy, self.generator = risk_model, accept_model, policy, generator
        self.calendar = calendar  # acceptance is averaged over it: decisions never read the contact's date
        self._accept_cache: dict = {}
        self.categories = categories if categories is not None else allowed_categories()
        self.shield, self.env, self.serving, self.ledger, self.versions = shield, env, serving, ledger, versions
        self.rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)
        self._last_prune: datetime | None = None
        self._key: bytes | None = None
        self.bundle_run_id = bundle_run_id

    # ------------------------------------------------------------------ scoring
    def _accept_probs(self, rows: pd.DataFrame, fatigue: np.ndarray) -> np.ndarray:
        """P(accept) of each offer, averaged over the acceptance model's training calendar: the same
        customer gets the same probabilities whatever the date (:func:`offer_acceptance`)."""
        return offer_acceptance(self.accept, rows, fatigue + 1.0, self.calendar, self._accept_cache)

    def decide(self, request: pd.DataFrame, now: datetime | None = None,
               dropped_fields: list[str] | None = None) -> pd.DataFrame:
        """Decide for every record; raises ``RequestError`` (bad fields) or ``RequestConflict`` (an id
        used for another customer) before anything is booked. One MLflow trace per sampled call when
        ``serving.tracing`` is on (:meth:`_traced`).

        ``dropped_fields``: fields removed from the request before it got here (MLflow's signature check
        drops undeclared columns); every record's warnings name them, as unknown fields."""
        traced = self._traced(request)
        with span(traced, "decide", "CHAIN", records=len(request),
                  model_versions=json.dumps(self.versions, default=str)) as root:
            out = self._decide(request, now, dropped_fields or [], traced)
            if root is not None:
                self._annotate(root, out)
            return out

    def _traced(self, request: pd.DataFrame) -> bool:
        """Whether this call is traced: ``serving.tracing`` and the sampling share, drawn from a hash of
        the first record's request id (else its customer id), so a retry is traced the same way."""
        s = self.serving
        if not getattr(s, "tracing", False) or not len(request):
            return False
        share = getattr(s, "trace_sampling", 1.0)
        if share >= 1.0:
            return True
        first = request.iloc[0]
        key = str(first.get("request_id") or first.get("customer_id") or "")
        return zlib.crc32(key.encode()) / 2**32 < share

    def _annotate(self, root, out: pd.DataFrame) -> None:
        """The trace's content: counts on the root span, one ``decision`` span per decision (at most
        ``serving.trace_max_decisions``), and for a single decision its request id and keyed customer
        hash as the trace's client request id and tag. Never a raw id, a name or a message."""
        import mlflow

        decisions = out["decision"].tolist()
        offers = [int(d["offer_percentage"]) for d in decisions]
        sources = [str(s) for s in out["message_source"].tolist()]
        contacts = sum(bool(d["contact"]) for d in decisions)
        root.set_attributes({"contacts": contacts, "offer_percentages": offers[:100], "message_sources": sources[:100]})
        # the Traces table's Request / Response columns: counts only, no customer data
        root.set_inputs({"records": len(out)})
        root.set_outputs({"contacts": contacts, "offers": dict(Counter(f"{o}%" for o in offers)),
                          "message_sources": dict(Counter(s for s in sources if s and s != "None"))})
        key = self._log_key()
        limit = int(getattr(self.serving, "trace_max_decisions", 50))
        keys = []
        for i, (cid, rid, d, meta, safety) in enumerate(zip(out["customer_id"], out["request_id"], decisions,
                                                            out["metadata"], out["safety"], strict=True)):
            ck = inference_log.customer_key(cid, key)
            keys.append(ck)
            if i >= limit:
                continue
            with mlflow.start_span("decision", span_type="UNKNOWN", attributes={
                    "request_id": rid or "", "customer_key": ck, "contact": bool(d["contact"]),
                    "offer_percentage": int(d["offer_percentage"]), "assignment": str(meta.get("assignment")),
                    "replayed": bool(meta.get("replayed")), "message_source": str(out["message_source"].iloc[i]),
                    "shield_verdict": str((safety or {}).get("verdict"))}):
                pass
        if len(out) > limit:
            root.set_attribute("decisions_not_spanned", len(out) - limit)
        if len(out) == 1:
            rid = out["request_id"].iloc[0]
            mlflow.update_current_trace(client_request_id=str(rid) if rid else None,
                                        tags={"retention.customer_key": keys[0]})

    def _decide(self, request: pd.DataFrame, now: datetime | None, dropped_fields: list[str],
                traced: bool = False) -> pd.DataFrame:
        now = now or datetime.now(UTC)
        rows, notes = parse_request(request, self.categories)
        if dropped_fields:
            note = unknown_fields_note(dropped_fields, "in this request")
            for record_notes in notes:
                record_notes.append(note)
        for i, when in enumerate(rows["local_time"]):
            if when is None:
                notes[i].append(f"local_time not given: decided as of {now:%Y-%m-%d %H:%M} UTC (server time), "
                                "so quiet hours and the send time are checked against it")
        self._maybe_prune(now)
        ids, request_ids = rows["customer_id"].tolist(), rows["request_id"].tolist()
        recorded, states, budget_total, budget_left = self.ledger.read(ids, request_ids, now)  # one round trip
        conflicts = {f"records[{i}].request_id": "already used for another customer; use a new id"
                     for i, rid in enumerate(request_ids) if rid in recorded and recorded[rid].customer_id != ids[i]}
        if conflicts:
            raise RequestConflict(conflicts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnseenCategoryWarning)  # unknown categories are reported per record
            risk = self.risk.predict_proba(rows[list(RISK_FEATURES)])[:, 1]
        fatigue = np.array([states[c].fatigue_count for c in ids], dtype=float)
        dsc = np.array([states[c].days_since_contact for c in ids], dtype=float)
        accept = self._accept_probs(rows, fatigue)
        monthly = rows["MonthlyCharges"].fillna(0.0).to_numpy(dtype=float)
        costs = offer_costs(monthly, self.env.offer_months)
        budget = np.full(len(rows), budget_left)
        obs = observation(risk, accept, budget, budget_total, dsc, fatigue, np.full(len(rows), self.serving.days_left),
                          monthly, self.rules, self.env.horizon_days)
        contact_ok, offer_ok = action_mask(budget, fatigue, dsc, costs, self.rules)
        proposed = np.asarray(self.policy.act(obs, contact_ok, offer_ok), dtype=np.int64)
        guarded, overridden = guard(proposed, budget, fatigue, dsc, costs, self.rules)
        allowed = allowed_arms(contact_ok, offer_ok)
        s = self.serving
        day = now.astimezone(UTC).date().isoformat()  # without a request_id: the customer's decision of the day
        decision_ids = [rid if rid else f"{cid}|{day}" for cid, rid in zip(ids, request_ids, strict=True)]
        holdout = in_holdout(ids, s.holdout_salt, s.holdout_share)
        assigned = assign(arm_of(guarded[:, 0], guarded[:, 1]), allowed, holdout, s.explore_epsilon,
                          unit_hashes(f"explore:{s.holdout_salt}", decision_ids))
        taken = np.asarray(ARMS, dtype=np.int64)[assigned.arm]
        actions = np.column_stack([taken, guarded[:, 2]])

        dry_runs, with_message = rows["dry_run"].tolist(), rows["with_message"].tolist()
        risk_out, accept_out = np.round(risk, 4).tolist(), np.round(accept, 4).tolist()
        # if contacted: P(retained) and the expected value of the chosen offer, for every row at once
        row, offer = np.arange(len(rows)), actions[:, 1]
        chosen = accept[row, offer]
        retained_if_contacted = np.round(1 - risk + risk * chosen, 4).tolist()
        retained_otherwise = np.round(1 - risk, 4).tolist()
        arm_value = accept * ((risk * monthly * self.env.ltv_months)[:, None] - costs) - self.env.contact_cost
        value_if_contacted = np.round(arm_value[row, offer], 2).tolist()
        out: list[dict[str, Any]] = []
        writes: list[tuple[int, dict[str, Any]]] = []  # (row, response) of contacts that get a message
        for i, (cid, rid, dry) in enumerate(zip(ids, request_ids, dry_runs, strict=True)):
            if rid and rid in recorded:
                out.append(as_replayed(recorded[rid].response))
                continue
            contact, k, delay = (int(x) for x in actions[i])
            warn = list(notes[i])
            if overridden[i]:
                warn.append("the guard changed the policy's proposal to respect fatigue, cooldown or budget")
            group = assigned.group[i]
            if group == HOLDOUT:
                warn.append("holdout: this customer is in the persistent holdout and is never contacted, so the "
                            "campaign's effect can be measured against it")
            elif group == EXPLORE:
                warn.append(f"exploration: this decision's arm was drawn at random among those the rules allow "
                            f"(serving.explore_epsilon = {s.explore_epsilon:g}), to learn what other offers do")
            response = {
                "customer_id": cid, "request_id": rid,
                "decision": {"contact": bool(contact), "offer_level": k if contact else 0,
                             "offer_percentage": OFFER_PERCENT[k] if contact else 0, "delay_days": delay,
                             "estimated_retention_prob": retained_if_contacted[i] if contact
                             else retained_otherwise[i]},
                "message": None, "message_source": None, "safety": {"passed": None, "violations": []},
                "metadata": {"churn_risk": risk_out[i], "accept_prob": accept_out[i],
                             "expected_value": value_if_contacted[i] if contact else 0.0,
                             "model_versions": self.versions, "warnings": warn, "dry_run": dry,
                             "replayed": False, "assignment": group,
                             "propensity": round(float(assigned.propensity[i]), 6)},
            }
            out.append(response)
            if contact and with_message[i]:
                writes.append((i, response))
        self._write_messages(rows, writes, traced)
        # One transaction books every contact together with its response, and logs every decision.
        pending = [i for i, (r, dry) in enumerate(zip(out, dry_runs, strict=True))
                   if not dry and not r["metadata"]["replayed"] and (r["decision"]["contact"] or r["request_id"])]
        bookings = [Booking(ids[i], request_ids[i], out[i],
                            self.env.contact_cost + costs[i, actions[i, 1]] if out[i]["decision"]["contact"] else 0.0,
                            retained_otherwise[i]) for i in pending]

        key = self._log_key() if self.serving.inference_log else b""  # read before the transaction takes the lock

        # what off-policy evaluation needs, built only for the log, before the transaction takes the lock
        audit: list[dict[str, Any]] = []
        if self.serving.inference_log:
            n_rows = len(rows)
            columns = {
                "policy_contact": guarded[:, 0].astype(bool).tolist(), "policy_offer": guarded[:, 1].tolist(),
                "proposed_contact": proposed[:, 0].astype(bool).tolist(), "proposed_offer": proposed[:, 1].tolist(),
                "guard_override": np.asarray(overridden, dtype=bool).tolist(),
                "arm_probs": inference_log.json_rows(np.round(assigned.probs, 6)),
                "arm_mask": inference_log.json_rows(np.asarray(allowed, dtype=bool)),
                "arm_values": inference_log.json_rows(np.column_stack([np.zeros(n_rows), np.round(arm_value, 4)])),
                "observation": inference_log.json_rows(np.round(obs, 6), OBS_COLUMNS)}
            audit = [{c: v[i] for c, v in columns.items()} for i in range(n_rows)]

        def merge_and_log(conn, committed: list[dict[str, Any]]) -> None:
            for i, response in zip(pending, committed, strict=True):
                out[i] = response
            if self.serving.inference_log:
                inference_log.write(conn, inference_log.log_rows(rows, out, key, self.bundle_run_id, now, audit))

        if bookings or self.serving.inference_log:
            self.ledger.commit(bookings, now, also=merge_and_log)
        return pd.DataFrame(out, columns=["customer_id", "request_id", "decision", "message", "message_source",
                                          "safety", "metadata"])

    def _log_key(self) -> bytes:
        if self._key is None:
            self._key = inference_log.log_key(self.ledger.engine)
        return self._key

    def _maybe_prune(self, now: datetime) -> None:
        """Delete expired full responses and old log rows, at most once an hour per process."""
        if self._last_prune is None or (now - self._last_prune).total_seconds() > 3600:
            self.ledger.prune(now)
            with self.ledger.engine.begin() as conn:
                inference_log.prune(conn, now - timedelta(days=self.serving.log_retention_days))
            self._last_prune = now

    # ------------------------------------------------------------------ messages
    def _write_messages(self, rows: pd.DataFrame, writes: list[tuple[int, dict[str, Any]]], tracing: bool = False
                        ) -> None:
        if not writes:
            return
        records = [rows.iloc[i].to_dict() for i, _ in writes]
        facts = [facts_from_record(rec, r["decision"]["offer_percentage"]) for rec, (_, r) in
                 zip(records, writes, strict=True)]
        texts: list[str | None] = [None] * len(writes)
        with span(tracing and self.generator is not None, "generate", "LLM", messages=len(writes)) as gen_span:
            texts = self._generate(facts, texts)
            if gen_span is not None:
                gen_span.set_attribute("generated", sum(t is not None for t in texts))
        with span(tracing, "shield", "GUARDRAIL", messages=len(writes)) as shield_span:
            self._enforce(writes, records, facts, texts)
            if shield_span is not None:
                shield_span.set_attributes({
                    "verdicts": [r["safety"]["verdict"] for _, r in writes],
                    "violated_rules": sorted({v["rule"] for _, r in writes for v in r["safety"]["violations"]
                                              if "rule" in v})})

    def _generate(self, facts: list, texts: list[str | None]) -> list[str | None]:
        """Write the messages in batches under the time budget; None where none was written."""
        if self.generator is not None:
            g, start = self.generator, time.perf_counter()
            for lo in range(0, len(facts), g.batch_size):
                if time.perf_counter() - start > self.serving.generation_time_budget_s:
                    break
                try:
                    texts[lo:lo + g.batch_size] = write_messages(g.model, g.tokenizer, facts[lo:lo + g.batch_size],
                                                                 g.max_new_tokens, g.batch_size, shield=self.shield,
                                                                 sampling=g.sampling)
                except Exception:  # the template covers it: a generator fault never fails a decision
                    log.exception("message generation failed; the approved template is sent instead")
                    break
        return texts

    def _enforce(self, writes, records, facts, texts) -> None:
        """Pass every message through the shield; the approved template replaces a failed or missing one."""
        bundled = self.versions.get("message-generator", NO_CHAMPION_GENERATOR)
        if self.generator is None and bundled == NO_CHAMPION_GENERATOR:
            # by design: no message-generator version passed its gate when this bundle was made
            missing, warning, no_text = ("no generator: this bundle has no champion message-generator",
                                         "approved template used: this bundle has no champion message-generator "
                                         "(its gate verdict is on its versions in the registry)", TEMPLATE_BY_DESIGN)
        elif self.generator is None:  # a bundled generator this service was built without (with_generator=False)
            missing, warning, no_text = ("no generator: this service was loaded without its message-generator",
                                         "approved template used: this service was loaded without its "
                                         "message-generator", TEMPLATE_BY_DESIGN)
        else:
            missing, warning, no_text = ("no generated text (time budget spent, generator fault, or no usable "
                                         "personal part written)",
                                         "message generation timed out or failed, or wrote no usable personal "
                                         "part: template used", TEMPLATE_NO_TEXT)
        for (_, r), rec, f, text in zip(writes, records, facts, texts, strict=True):
            result = self.shield.enforce(text, f.name, f.offer_pct, when=rec["local_time"], timezone=rec["timezone"],
                                         missing=missing)
            r["message"], r["message_source"] = result.text, result.source
            # passed: the generated text's verdict (None: there was none to check); verdict: what was sent
            verdict = no_text if text is None else GENERATED_PASSED if result.passed else GENERATED_BLOCKED
            r["safety"] = {"passed": None if text is None else result.passed, "verdict": verdict,
                           "violations": [v.as_dict() for v in result.violations],
                           "send_at": result.send_at.isoformat() if result.send_at else None}
            if text is None:
                r["metadata"]["warnings"].append(warning)
