"""The decision service: everything the composite model does, without MLflow in the way.

For a batch of customer records:

1. validate and normalise the request (:mod:`retention.serving.schema`; bad input -> field errors);
2. answer repeated ``request_id`` values from the ledger (idempotency);
3. score churn risk and acceptance of each offer with the champion tabular models;
4. read each customer's state (days since contact, fatigue, cooldown, budget) from the ledger;
5. ask the policy, then apply the **guard** (hard constraints) to its answer;
6. for each contact (unless ``dry_run``), reserve it in the ledger atomically. A refusal (budget
   gone, a concurrent contact) turns the decision into "no contact", with a warning;
7. write messages in batches under a time budget and pass each through the **shield**. On a
   timeout or a block, the approved template is sent. No unsafe message leaves.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from retention.config import EnvConfig, ServingConfig
from retention.messaging.evaluate import generate_batch
from retention.messaging.prompts import facts_from_record
from retention.messaging.shield import Shield
from retention.policy import OFFER_PERCENT
from retention.policy.cohort import offer_costs
from retention.policy.env import observation
from retention.policy.guard import GuardRules, action_mask, guard
from retention.serving.ledger import ContactLedger
from retention.serving.schema import allowed_categories, parse_request
from retention.tabular.features import RISK_FEATURES, UnseenCategoryWarning, offer_acceptance

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "mon", "mon")  # weekend -> next contact day in Bank data


@dataclass
class Generator:
    model: Any
    tokenizer: Any
    max_new_tokens: int
    batch_size: int


class DecisionService:
    def __init__(self, risk_model, accept_model, policy, generator: Generator | None, shield: Shield,
                 env: EnvConfig, serving: ServingConfig, ledger: ContactLedger, versions: dict[str, str],
                 categories: dict[str, set[str]] | None = None):
        self.risk, self.accept, self.policy, self.generator = risk_model, accept_model, policy, generator
        self.categories = categories if categories is not None else allowed_categories()
        self.shield, self.env, self.serving, self.ledger, self.versions = shield, env, serving, ledger, versions
        self.rules = GuardRules(env.fatigue_cap, env.cooldown_days, env.contact_cost)

    # ------------------------------------------------------------------ scoring
    def _accept_probs(self, rows: pd.DataFrame, fatigue: np.ndarray) -> np.ndarray:
        times = [t if t is not None else datetime.now(UTC) for t in rows["local_time"]]
        return offer_acceptance(self.accept, rows, fatigue + 1.0, [MONTHS[t.month - 1] for t in times],
                                [WEEKDAYS[t.weekday()] for t in times])

    def decide(self, request: pd.DataFrame, now: datetime | None = None) -> pd.DataFrame:
        now = now or datetime.now(UTC)
        rows, notes = parse_request(request, self.categories)
        replayed = self.ledger.replay([r for r in rows["request_id"] if r])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnseenCategoryWarning)  # unknown categories are reported per record
            risk = self.risk.predict_proba(rows[list(RISK_FEATURES)])[:, 1]
        states, budget_total, budget_left = self.ledger.states(rows["customer_id"].tolist(), now)
        fatigue = np.array([states[c].fatigue_count for c in rows["customer_id"]], dtype=float)
        dsc = np.array([states[c].days_since_contact for c in rows["customer_id"]], dtype=float)
        accept = self._accept_probs(rows, fatigue)
        monthly = rows["MonthlyCharges"].fillna(0.0).to_numpy(dtype=float)
        costs = offer_costs(monthly, self.env.offer_months)
        budget = np.full(len(rows), budget_left)
        obs = observation(risk, accept, budget, budget_total, dsc, fatigue, np.full(len(rows), self.serving.days_left),
                          monthly, self.rules, self.env.horizon_days)
        contact_ok, offer_ok = action_mask(budget, fatigue, dsc, costs, self.rules)
        proposed = np.asarray(self.policy.act(obs, contact_ok, offer_ok), dtype=np.int64)
        actions, overridden = guard(proposed, budget, fatigue, dsc, costs, self.rules)

        ids, request_ids = rows["customer_id"].tolist(), rows["request_id"].tolist()
        dry_runs, with_message = rows["dry_run"].tolist(), rows["with_message"].tolist()
        risk_out, accept_out = np.round(risk, 4).tolist(), np.round(accept, 4).tolist()
        # if contacted: P(retained) and the expected value of the chosen offer, for every row at once
        row, offer = np.arange(len(rows)), actions[:, 1]
        chosen = accept[row, offer]
        retained_if_contacted = np.round(1 - risk + risk * chosen, 4).tolist()
        retained_otherwise = np.round(1 - risk, 4).tolist()
        value_if_contacted = np.round(chosen * (risk * monthly * self.env.ltv_months - costs[row, offer])
                                      - self.env.contact_cost, 2).tolist()
        out: list[dict[str, Any]] = []
        writes: list[tuple[int, dict[str, Any]]] = []  # (row, response) of contacts that get a message
        for i, (cid, rid, dry) in enumerate(zip(ids, request_ids, dry_runs, strict=True)):
            if rid and rid in replayed:
                out.append({**replayed[rid], "metadata": {**replayed[rid]["metadata"], "replayed": True}})
                continue
            contact, k, delay = (int(x) for x in actions[i])
            warn = list(notes[i])
            if overridden[i]:
                warn.append("the guard changed the policy's proposal to respect fatigue, cooldown or budget")
            cost = self.env.contact_cost + costs[i, k] if contact else 0.0
            if contact and not dry:
                res = self.ledger.reserve(cid, k, cost, now, rid)
                if res.status != "reserved":
                    warn.append(f"contact not recorded: {res.reason}")
                    contact = 0
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
                             "replayed": False},
            }
            out.append(response)
            if contact and with_message[i]:
                writes.append((i, response))
        self._write_messages(rows, writes)
        for rid, dry, response in zip(request_ids, dry_runs, out, strict=True):
            if rid and not dry and response["decision"]["contact"] and not response["metadata"]["replayed"]:
                self.ledger.record_response(rid, response)
        return pd.DataFrame(out, columns=["customer_id", "request_id", "decision", "message", "message_source",
                                          "safety", "metadata"])

    # ------------------------------------------------------------------ messages
    def _write_messages(self, rows: pd.DataFrame, writes: list[tuple[int, dict[str, Any]]]) -> None:
        if not writes:
            return
        records = [rows.iloc[i].to_dict() for i, _ in writes]
        facts = [facts_from_record(rec, r["decision"]["offer_percentage"]) for rec, (_, r) in
                 zip(records, writes, strict=True)]
        texts: list[str | None] = [None] * len(writes)
        if self.generator is not None:
            g, start = self.generator, time.perf_counter()
            for lo in range(0, len(writes), g.batch_size):
                if time.perf_counter() - start > self.serving.generation_time_budget_s:
                    break
                texts[lo:lo + g.batch_size] = generate_batch(g.model, g.tokenizer, facts[lo:lo + g.batch_size],
                                                             g.max_new_tokens, g.batch_size)
        for (_, r), rec, f, text in zip(writes, records, facts, texts, strict=True):
            result = self.shield.enforce(text, f.name, f.offer_pct, when=rec["local_time"], timezone=rec["timezone"])
            r["message"], r["message_source"] = result.text, result.source
            r["safety"] = {"passed": result.passed, "violations": [v.as_dict() for v in result.violations],
                           "send_at": result.send_at.isoformat() if result.send_at else None}
            if text is None:
                r["metadata"]["warnings"].append("message generation timed out or is unavailable: template used")
