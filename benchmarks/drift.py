"""Benchmark: the drift check's speed, false alarms and detections on real Telco rows.

Usage (no trained bundle needed; about a minute on 2 cores):

    .venv/bin/python benchmarks/drift.py [--sizes 200,500,1000] [--stable 20] [--shifted 5]

Customers come from the data mirror (``RETENTION_DATA_MIRROR``, default ``../shared/data``), split
as the ``data`` step splits them (stratified 80/10/10, seed 42): the *train* part is the reference,
valid + test (1,409 held-out customers) are the live traffic. Every row goes through the real
decision service (request validation, policy baseline, guard, inference log) with two scorers in
place of the registered models: a logistic regression for churn risk fitted here on the train part
(a real model of the same inputs), and a fixed acceptance curve (offer level, age band, weekday,
contacts). The drift spec is the project's ``monitoring/drift.yaml``.

Printed:

* the CPU, and the time of one drift check on a 10,000-row window: the full Evidently report (what
  the ``drift`` step runs), the scores alone (``compute_drift(report=False)``, the same numbers), and
  writing the HTML;
* per window size: false alarms over ``--stable`` windows drawn from the held-out customers (no
  replacement within a window), and for each shift (MonthlyCharges +30%, Contract moved towards
  month-to-month, tenure halved, an unseen PaymentMethod on a quarter of the rows) how many of
  ``--shifted`` windows raised the alarm and in how many the shifted column was ranked first.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from retention import hardware
from retention.config import load_config
from retention.data import telco
from retention.data.splits import stratified_split
from retention.messaging.shield import default_shield
from retention.monitoring import drift as D
from retention.monitoring import report as rep
from retention.monitoring import spec as S
from retention.monitoring import window as W
from retention.policy.baselines import GreedyExpectedValue
from retention.policy.guard import GuardRules
from retention.serving import inference_log
from retention.serving.ledger import ContactLedger
from retention.serving.service import DecisionService
from retention.tabular.features import RISK_CATEGORICAL, RISK_NUMERIC

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
SHIFTS = {
    "MonthlyCharges +30%": ("MonthlyCharges", lambda w, r: w.assign(
        MonthlyCharges=(w["MonthlyCharges"] * 1.3).round(2))),
    "Contract -> month-to-month": ("Contract", lambda w, r: w.assign(
        Contract=np.where(r.random(len(w)) < 0.5, "Month-to-month", w["Contract"]))),
    "tenure halved": ("tenure", lambda w, r: w.assign(tenure=w["tenure"] // 2)),
    "unseen PaymentMethod (25%)": ("PaymentMethod", lambda w, r: w.assign(
        PaymentMethod=np.where(r.random(len(w)) < 0.25, "Crypto wallet", w["PaymentMethod"]))),
}

# the stand-in acceptance curve has no calendar effect: any mix will do
BANK_LIKE_CALENDAR = (("may", "mon", 0.6), ("dec", "fri", 0.4))


class LogisticRisk:
    """Churn risk from a logistic regression on the Telco features (missing values handled as serving sends them)."""

    def __init__(self, train: pd.DataFrame):
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        prep = ColumnTransformer([("num", StandardScaler(), list(RISK_NUMERIC)),
                                  ("cat", OneHotEncoder(handle_unknown="ignore"), list(RISK_CATEGORICAL))])
        self.model = make_pipeline(prep, LogisticRegression(max_iter=2000))
        self.model.fit(self._x(train), train["Churn"])

    @staticmethod
    def _x(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[list(RISK_NUMERIC) + list(RISK_CATEGORICAL)].copy()
        for c in RISK_NUMERIC:
            x[c] = pd.to_numeric(x[c], errors="coerce").fillna(0.0)
        for c in RISK_CATEGORICAL:
            x[c] = x[c].astype(object).where(x[c].notna(), "missing").astype(str)
        return x

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self._x(frame))


class CurveAccept:
    """Acceptance rising with the offer, higher for seniors and on Fridays, lower after contacts."""

    def predict_proba(self, f: pd.DataFrame) -> np.ndarray:
        p = (0.04 + 0.04 * f["offer_level"].to_numpy(float) + 0.03 * (f["age_band"] == "65_plus").to_numpy(float)
             + 0.01 * (f["day_of_week"] == "fri").to_numpy(float)
             - 0.01 * (f["campaign_contacts"].to_numpy(float) - 1))
        return np.column_stack([1 - p, p])


def service(url: str, risk: LogisticRisk) -> DecisionService:
    cfg = load_config("cpu")
    rules = GuardRules(cfg.env.fatigue_cap, cfg.env.cooldown_days, cfg.env.contact_cost)
    return DecisionService(risk, CurveAccept(), GreedyExpectedValue(cfg.env), None, default_shield(), cfg.env,
                           cfg.serving, ContactLedger(url, rules, budget=1e9), {"churn-risk": "logreg"},
                           BANK_LIKE_CALENDAR)


def requests(customers: pd.DataFrame, seed: int) -> pd.DataFrame:
    return W.as_requests(customers, NOW, 7, seed)


def decide(svc: DecisionService, req: pd.DataFrame) -> pd.DataFrame:
    before = inference_log.read_window(svc.ledger.engine)["id"].max()
    for lo in range(0, len(req), 5000):
        svc.decide(req.iloc[lo:lo + 5000].reset_index(drop=True), now=NOW)
    rows = inference_log.read_window(svc.ledger.engine)
    return rows[rows["id"] > (before if before == before else 0)].reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,500,1000", help="window sizes (rows), comma-separated")
    ap.add_argument("--stable", type=int, default=20, help="same-population windows per size")
    ap.add_argument("--shifted", type=int, default=5, help="windows per shift and size")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    info = hardware.cpu_info()
    print(f"CPU: {info['model']} ({info['cores']} cores available)")
    mirror = Path(os.environ.get("RETENTION_DATA_MIRROR", Path(__file__).resolve().parents[1].parent / "shared"
                                 / "data"))
    df = telco.clean(telco.read_raw(mirror / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"))
    parts = stratified_split(df, telco.LABEL, 0.1, 0.1, 42)
    train, held = parts["train"], pd.concat([parts["valid"], parts["test"]], ignore_index=True)
    spec = S.load_spec()
    risk = LogisticRisk(train)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        reference = W.reference_frame(service(f"sqlite:///{tmp}/ref.db", risk), train, now=NOW)
        print(f"reference: {len(reference):,} train customers scored by the service in {time.perf_counter() - t:.1f}s")
        live_svc = service(f"sqlite:///{tmp}/live.db", risk)
        live = decide(live_svc, requests(held, 1))
        print(f"live traffic: {len(live):,} held-out customers decided")

        big = decide(live_svc, requests(held.sample(10_000, replace=True, random_state=0), 2))
        D.compute_drift(reference, big.head(500), spec)  # warm-up: imports, registration
        t = time.perf_counter()
        full = D.compute_drift(reference, big, spec)
        t_full = time.perf_counter() - t
        t = time.perf_counter()
        D.compute_drift(reference, big, spec, report=False)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        rep.save_reports(full, Path(tmp) / "report")
        t_html = time.perf_counter() - t
        print(f"10,000-row window vs {len(reference):,} reference rows, {len(spec.columns)} columns: Evidently report "
              f"{t_full:.2f}s, scores only {t_fast:.2f}s, writing HTML+JSON {t_html:.2f}s "
              f"(alarm: {full.detected}; top column {full.columns[0].column} at {full.columns[0].severity:.2f}x)")
        print()
        head = " | ".join(f"{name} (alarm / ranked 1st)" for name in SHIFTS)
        print(f"| window rows | false alarms / stable windows | worst stable column (x threshold) | {head} |")
        print("|" + " --- |" * (3 + len(SHIFTS)))
        for n in sizes:
            alarms, worst = 0, (None, 0.0)
            for seed in range(args.stable):
                r = D.compute_drift(reference, live.sample(n, random_state=seed), spec, report=False)
                alarms += r.detected
                if r.columns[0].severity > worst[1]:
                    worst = (r.columns[0].column, r.columns[0].severity)
            cells = []
            for column, shift in SHIFTS.values():
                hits = first = 0
                for seed in range(args.shifted):
                    rng = np.random.default_rng(1000 + seed)
                    window = shift(requests(held.sample(n, random_state=100 + seed), 100 + seed), rng)
                    shift_svc = service(f"sqlite:///{tmp}/shift-{n}-{seed}-{len(cells)}.db", risk)
                    r = D.compute_drift(reference, decide(shift_svc, window), spec, report=False)
                    hits += r.detected
                    first += r.columns[0].column == column
                cells.append(f"{hits}/{args.shifted} / {first}/{args.shifted}")
            print(f"| {n} | {alarms}/{args.stable} | {worst[0]} {worst[1]:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
