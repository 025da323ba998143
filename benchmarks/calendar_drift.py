"""Held-out customers over REST in any month: do decisions swing with the calendar, does drift alarm?

    .venv/bin/python benchmarks/calendar_drift.py [--dates 2026-11-30,2026-12-01,2027-01-15,2027-07-01]

Run after ``make run`` (it serves ``models:/retention@champion`` from ``$MLFLOW_TRACKING_URI``, default
``sqlite:///mlflow.db``). For each date, a fresh ``mlflow models serve`` of the bundle writes to its own
temporary ledger (``RETENTION_LEDGER_URL``); the Telco **test** split (customers no model saw) is sent
as it is, 50 records a request, as dry runs whose ``local_time`` is spread over the day (10:00-18:00).
Then ``retention drift --window all --ledger-url ...`` compares that window with the reference, as an
operator would, and its exit code is read (0 quiet, 1 drift, 2 the check could not run).

Printed per date: the exit code, drifted columns, the contact share, the offer mix of contacts, the
mean predicted acceptance per offer level, and each customer's offer compared with the first date's
(the share of customers whose offer changed). This is issue #25's "a month boundary alone never raises
an alarm", measured end to end through the documented interface.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving import Server  # noqa: E402


def test_customers() -> pd.DataFrame:
    import mlflow

    from retention.config import load_config
    from retention.data.pipeline import load_split
    from retention.data.steps import processed_dir_of

    cfg = load_config("cpu")
    info = mlflow.models.get_model_info("models:/retention@champion")
    data_run = mlflow.tracking.MlflowClient().get_run(info.run_id).data.params.get("data_run_id", "none")
    return load_split(processed_dir_of(data_run, cfg), "telco", "test")


def requests_for(customers: pd.DataFrame, day: datetime, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    minutes = rng.integers(10 * 60, 18 * 60, len(customers))
    times = [(day.replace(hour=0, minute=0) + pd.Timedelta(minutes=int(m))).isoformat() for m in minutes]
    req = customers.drop(columns=["Churn"], errors="ignore").rename(columns={"customerID": "customer_id"})
    return req.assign(local_time=times, dry_run=True, with_message=False).to_dict("records")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dates", default="2026-11-30,2026-12-01,2027-01-15,2027-07-01")
    ap.add_argument("--model", default="models:/retention@champion")
    args = ap.parse_args()
    import mlflow

    from retention.hardware import cpu_info

    print(f"CPU: {cpu_info()['model']}")
    customers = test_customers()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first: pd.Series | None = None
    rows = []
    for text in args.dates.split(","):
        day = datetime.fromisoformat(text)
        ledger = Path(tempfile.mkdtemp()) / "ledger.db"
        server = Server(args.model, {**env, "RETENTION_LEDGER_URL": f"sqlite:///{ledger}"})
        try:
            reqs = requests_for(customers, day)
            out = []
            for lo in range(0, len(reqs), 50):
                status, body = server.post(reqs[lo:lo + 50])
                if status != 200:
                    raise SystemExit(f"calendar_drift: HTTP {status} for records {lo}..: {body}")
                out += body["predictions"]
        finally:
            server.stop()
        res = pd.DataFrame(out)
        decision = pd.json_normalize(res["decision"])
        offer = decision["offer_percentage"].where(decision["contact"], -1).astype(float)
        offer.index = res["customer_id"]
        changed = float((offer != first.reindex(offer.index)).mean()) if first is not None else 0.0
        first = offer if first is None else first
        drift = subprocess.run([str(Path(sys.executable).parent / "retention"), "--no-progress", "drift", "--window",
                                "all", "--ledger-url", f"sqlite:///{ledger}"],
                               env=env, capture_output=True, text=True)
        latest = mlflow.search_runs(filter_string="tags.`drift.detected` != ''", order_by=["start_time DESC"],
                                    max_results=1)
        drifted = latest["tags.drift.drifted_columns"].iloc[0] if len(latest) else "?"
        contacts = decision[decision["contact"]]
        mix = contacts["offer_percentage"].value_counts(normalize=True).reindex([0, 5, 10, 15], fill_value=0.0)
        rows.append({"date": text, "drift exit": drift.returncode, "drifted columns": drifted,
                     "contact %": round(100 * decision["contact"].mean(), 1),
                     "offers 0/5/10/15 % of contacts": " / ".join(f"{100 * v:.0f}" for v in mix),
                     "offer changed vs first date %": round(100 * changed, 2)})
        if drift.returncode not in (0, 1):
            print(drift.stdout[-2000:], drift.stderr[-2000:])
    print(f"\n{len(customers)} held-out customers per date, over REST (dry runs), "
          "then `retention drift --window all`\n")
    print("| " + " | ".join(rows[0]) + " |\n|" + " --- |" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
