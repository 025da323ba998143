"""Render the README's drift-report screenshots from a real run (Evidently's HTML, headless Chromium).

Run after ``make run`` (it needs a ``retention`` champion and the data run's held-out customers)::

    .venv/bin/python docs/screenshots.py            # writes docs/img/drift-*.png

It decides two windows of held-out Telco *test* customers through ``models:/retention@champion``
as dry runs into throw-away ledgers: one as they are, one with ``MonthlyCharges`` raised by 30% and
half the contracts moved to month-to-month. The ``drift`` step reviews each one (its own MLflow run,
report and summary, exactly as ``retention drift`` would), and Chromium photographs the two HTML
reports. Needs Debian's ``chromium`` (``apt-get install chromium``); nothing here is used by tests.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import mlflow
import numpy as np

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 1500) -> None:
    """Photograph ``html`` after its scripts ran (Evidently draws the report in the browser)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise SystemExit("docs/screenshots.py: Chromium not found; install it with `apt-get install chromium`")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        "--virtual-time-budget=15000", f"--screenshot={png}", html.resolve().as_uri()],
                       check=True, capture_output=True)
    print(f"screenshots: {png}")


def main() -> None:
    from retention.config import load_config
    from retention.data.pipeline import load_split
    from retention.data.steps import processed_dir_of
    from retention.monitoring.drift import send_traffic
    from retention.monitoring.steps import drift
    from retention.serving.model import service_from_uri
    from retention.tracking import configure_tracking

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-uri", default="models:/retention@champion")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "img")
    args = ap.parse_args()
    cfg = load_config("cpu")
    data_runs = mlflow.search_runs([configure_tracking()], output_format="list",
                                   filter_string="tags.`mlflow.project.entryPoint` = 'data' "
                                                 "and attributes.status = 'FINISHED'",
                                   order_by=["attributes.start_time DESC"], max_results=1)
    if not data_runs:
        raise SystemExit("docs/screenshots.py: no finished `data` run; run `make run` first")
    customers = load_split(processed_dir_of(data_runs[0].info.run_id, cfg), "telco", "test")
    rng = np.random.default_rng(0)
    shifted = customers.assign(MonthlyCharges=(customers["MonthlyCharges"] * 1.3).round(2),
                               Contract=np.where(rng.random(len(customers)) < 0.5, "Month-to-month",
                                                 customers["Contract"]))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, window in [("stable", customers), ("shifted", shifted)]:
            url = f"sqlite:///{tmp}/{name}.db"
            service = service_from_uri(args.model_uri, with_generator=False, serving_overrides={"ledger_url": url})
            send_traffic(service, window)
            out = drift(cfg, {"window": "8d", "ledger_url": url, "model_uri": args.model_uri,
                              "fail_on_drift": "false"})
            screenshot(out.report, args.out / f"drift-{name}.png")


if __name__ == "__main__":
    main()
