"""The outcome report against a simulated world's truth, over many replications (issue #25's targets).

    .venv/bin/python benchmarks/outcome_report.py --replications 200 [--model-uri models:/retention@champion]

Run after ``make run`` (it serves the champion bundle from the tracking store of
``$MLFLOW_TRACKING_URI``, default ``sqlite:///mlflow.db``). Every Telco customer is decided once
through the **real** serving path on a temporary ledger (:func:`retention.monitoring.world.simulate_decisions`);
then, per replication, the world draws what happened and the report's statistics are computed:

* **realised uplift:** how often the 95 % interval of the churn reduction (all eligible customers,
  and those the policy would contact) covers the world's true reduction;
* **the holdout:** its share and its contacts in the served log, and the share over 200 holdout
  salts (the assignment function on the same ids);
* **calibration alarms:** how often an alarm fires when acceptance is 0.6 x the prediction, per
  number of acceptance outcomes in the window, and how often any of the report's checks fires in
  a faithful world (the false-alarm rate per window).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.offpolicy import cpu_name  # noqa: E402
from retention.config import load_config  # noqa: E402
from retention.monitoring.uplift import calibration, customer_outcomes, realised_uplift  # noqa: E402
from retention.monitoring.world import WorldConfig, draw_outcomes, simulate_decisions, true_uplift  # noqa: E402
from retention.serving.assignment import in_holdout  # noqa: E402

FAITHFUL = WorldConfig(accept_factor=1.0, churn_shift=1.0, opt_out=0.0, harm=0.0)


def served_log(model_uri: str, world: WorldConfig, mirror: Path) -> pd.DataFrame:
    import mlflow

    from retention.serving.model import service_from_uri

    mlflow.tracing.disable()
    customers = pd.read_csv(mirror / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv")
    customers["TotalCharges"] = pd.to_numeric(customers["TotalCharges"], errors="coerce").fillna(0.0)
    ledger = Path(tempfile.mkdtemp()) / "world.db"
    service = service_from_uri(model_uri, with_generator=False,
                               serving_overrides={"ledger_url": f"sqlite:///{ledger}", "tracing": False,
                                                  "campaign_budget": 1e9})
    return simulate_decisions(service, customers, world)


def coverage(log: pd.DataFrame, world: WorldConfig, reps: int, horizon: float) -> dict[str, float]:
    truth = true_uplift(log, world)
    hits = {"all": 0, "would_contact": 0}
    widths = {"all": [], "would_contact": []}
    now = datetime.now(UTC)
    for r in range(reps):
        found = draw_outcomes(log, world, np.random.default_rng(10_000 + r))
        found["outcome_date"] = pd.to_datetime(found["outcome_date"]).dt.date
        up = realised_uplift(customer_outcomes(log, found, now, horizon))
        for scope in hits:
            e = up[scope]["churn_reduction"]
            hits[scope] += int(e.low <= truth[scope] <= e.high)
            widths[scope].append(e.high - e.low)
    return {**{f"coverage_{s}": hits[s] / reps for s in hits},
            **{f"width_{s}": float(np.mean(widths[s])) for s in hits}, **{f"truth_{s}": truth[s] for s in hits}}


def alarms(log: pd.DataFrame, reps: int, sizes: list[int], m) -> list[dict[str, float]]:
    """Detection rate on acceptance x 0.6, and the false-alarm rate of a whole report in a faithful world."""
    contacted = log[log["contact"].astype(bool)].reset_index(drop=True)
    level = contacted["offer_level"].astype(int).to_numpy()
    p_accept = contacted[[f"accept_{k}" for k in range(4)]].to_numpy(float)[np.arange(len(contacted)), level]
    quiet = log[~log["contact"].astype(bool)]["churn_risk"].to_numpy(float)
    rows = []
    for n in sizes:
        fired = false = 0
        for r in range(reps):
            rng = np.random.default_rng(r)
            idx = rng.integers(0, len(contacted), n)
            p, lv = p_accept[idx], level[idx]
            biased = rng.random(n) < 0.6 * p
            faithful = rng.random(n) < p
            churn_p = quiet[rng.integers(0, len(quiet), max(n // 2, 1))] if len(quiet) else np.array([])
            churn_y = rng.random(len(churn_p)) < churn_p
            kw = {"checks": 5, "alpha": m.alarm_alpha, "tolerance": m.alarm_tolerance,
                  "min_outcomes": m.alarm_min_outcomes, "intervals": False}
            fired += any(calibration(f"a{k}", p[lv == k], biased[lv == k], **kw).alarm for k in range(4))
            false += any([calibration("churn", churn_p, churn_y, **kw).alarm,
                          *[calibration(f"a{k}", p[lv == k], faithful[lv == k], **kw).alarm for k in range(4)]])
        rows.append({"outcomes": n, "detected": fired / reps, "false_alarms": false / reps})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, default=200)
    ap.add_argument("--model-uri", default="models:/retention@champion")
    ap.add_argument("--mirror", default=os.environ.get("RETENTION_DATA_MIRROR", "../shared/data"))
    ap.add_argument("--alarms-only", action="store_true", help="skip the uplift coverage replications")
    args = ap.parse_args()
    cfg = load_config("cpu")
    world = WorldConfig(horizon_days=cfg.monitoring.outcome_horizon_days)
    t0 = time.perf_counter()
    log = served_log(args.model_uri, world, Path(args.mirror))
    print(f"CPU: {cpu_name()}; {len(log):,} customers decided through {args.model_uri} in "
          f"{time.perf_counter() - t0:.1f} s")
    hold = log["assignment"].eq("holdout")
    print(f"holdout: {100 * hold.mean():.2f} % of decisions (setting {100 * cfg.serving.holdout_share:.0f} %), "
          f"{int((hold & log['contact'].astype(bool)).sum())} holdout contacts")
    ids = [f"customer-{i}" for i in range(len(log))]
    shares = np.array([in_holdout(ids, f"salt-{s}", cfg.serving.holdout_share).mean() for s in range(200)])
    print(f"holdout share over 200 salts ({len(ids):,} ids): mean {100 * shares.mean():.2f} %, "
          f"{100 * np.mean(np.abs(shares - cfg.serving.holdout_share) <= 0.01):.1f} % of salts within +-1 point")
    if not args.alarms_only:
        worlds(log, world, args, cfg)
    print("\n| acceptance outcomes in the window | alarm on acceptance x0.6 | false alarms per report (faithful) |")
    print("| ---: | ---: | ---: |")
    for row in alarms(log, args.replications, [100, 200, 400, 800, 1600, 3200], cfg.monitoring):
        print(f"| {row['outcomes']:,} | {100 * row['detected']:.1f} % | {100 * row['false_alarms']:.1f} % |")


def worlds(log: pd.DataFrame, world: WorldConfig, args: argparse.Namespace, cfg) -> None:
    for name, w in (("make run's world (acceptance x0.6, churn x1.2, harm +8 pt at tenure >= 48)", world),
                    ("faithful world", FAITHFUL)):
        t0 = time.perf_counter()
        c = coverage(log, w, args.replications, cfg.monitoring.outcome_horizon_days)
        print(f"{name}: true churn reduction {100 * c['truth_all']:+.2f} pt (all), "
              f"{100 * c['truth_would_contact']:+.2f} pt (would contact); 95 % interval coverage over "
              f"{args.replications} replications: {100 * c['coverage_all']:.1f} % / "
              f"{100 * c['coverage_would_contact']:.1f} %; mean width {100 * c['width_all']:.2f} pt "
              f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
