"""Photograph the MLflow UI of a real ``make run`` for the README and the UI guide (headless Chromium).

Run in the project folder after ``make run``::

    .venv/bin/python docs/ui_screenshots.py          # writes docs/img/ui-*.png

It starts ``mlflow ui`` on the project's tracking store (as ``make ui`` does) on a free port and
photographs: the experiment's runs (``workflowType=machine_learning``: the view the README
describes), its traces, the ``evaluate_policy`` run, the ``outcome_report`` run, the
``retention-policy`` model's versions and its champion version's page, and the ``retention`` model's
stage-transition table (experiment ``registry-history``). It also copies the ``outcome_report`` run's plots to
``docs/img/outcome-*.png``. Needs Debian's ``chromium``; nothing here is used by tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from docs.screenshots import CHROMIUM_FLAGS  # noqa: E402
from retention.cloud.postgres import free_port  # noqa: E402

OUT = Path(__file__).resolve().parent / "img"


def shoot(url: str, png: Path, width: int = 1500, height: int = 950, wait_ms: int = 20000) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise SystemExit("docs/ui_screenshots.py: Chromium not found; install it with `apt-get install chromium`")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--virtual-time-budget={wait_ms}", f"--screenshot={png}", url],
                       check=True, capture_output=True, timeout=180)
    print(f"ui_screenshots: {png}")


def latest(experiment_id: str, step: str):
    runs = mlflow.search_runs([experiment_id], filter_string=f"tags.`mlflow.runName` = '{step}'",
                              order_by=["start_time DESC"], max_results=1, output_format="list")
    return runs[0] if runs else None


def main() -> None:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME", "retention"))
    if exp is None:
        raise SystemExit("docs/ui_screenshots.py: no 'retention' experiment; run `make run` first")
    OUT.mkdir(exist_ok=True)
    report = latest(exp.experiment_id, "outcome_report")
    if report is not None:
        for name in ("uplift", "calibration"):
            local = mlflow.artifacts.download_artifacts(f"runs:/{report.info.run_id}/plots/outcome_{name}.png")
            shutil.copy(local, OUT / f"outcome-{name}.png")
            print(f"ui_screenshots: {OUT / f'outcome-{name}.png'}")
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "ui", "--backend-store-uri", uri, "-h", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5)  # noqa: S310
                break
            except OSError:
                time.sleep(0.5)
        e = exp.experiment_id
        pages = {"ui-runs.png": f"{base}/#/experiments/{e}/runs?workflowType=machine_learning",
                 "ui-traces.png": f"{base}/#/experiments/{e}/traces",
                 "ui-registry.png": f"{base}/#/models/retention-policy"}
        champion = mlflow.MlflowClient().get_model_version_by_alias("retention-policy", "champion")
        pages["ui-model-version.png"] = f"{base}/#/models/retention-policy/versions/{champion.version}"
        history = mlflow.get_experiment_by_name("registry-history")
        if history is not None:
            found = mlflow.search_runs([history.experiment_id], filter_string="tags.`mlflow.runName` = 'retention'",
                                       max_results=1, output_format="list")
            if found:
                pages["ui-registry-history.png"] = (f"{base}/#/experiments/{history.experiment_id}/runs/"
                                                    f"{found[0].info.run_id}/artifacts/stage_transitions.json")
        for step in ("evaluate_policy", "outcome_report"):
            run = latest(e, step)
            if run is not None:
                pages[f"ui-{step.replace('_', '-')}.png"] = f"{base}/#/experiments/{e}/runs/{run.info.run_id}"
        tall = {"ui-model-version.png": 1900}  # the version's tags sit below its card
        for name, url in pages.items():
            shoot(url, OUT / name, height=tall.get(name, 950))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
