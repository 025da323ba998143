"""Where the time goes before the registry and the MLflow UI answer (issue #26).

    .venv/bin/python benchmarks/ui_startup.py [--repeats 3]

Run in the project folder after ``make run`` (the tracking store is ``$MLFLOW_TRACKING_URI``, default
``sqlite:///mlflow.db``). Measures, each ``--repeats`` times, as fresh processes:

* ``python -c "import mlflow"``: the interpreter and MLflow's import;
* ``retention registry status`` whole, and, in one process, MLflow's import, the tracking store's
  first call (opening the database, MLflow's schema check) and the project's own status queries;
* ``mlflow ui`` with MLflow's default 4 workers and with ``make ui``'s (``UI_WORKERS``, the cores
  this process may use, at most 4): seconds until ``/health`` answers and until the first
  experiments search (what the first page asks for) answers. Each worker imports MLflow's server
  on start, so more workers than cores only queue those imports.

Prints the CPU and a Markdown table (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.offpolicy import cpu_name  # noqa: E402
from retention.cloud.postgres import free_port  # noqa: E402

BIN = Path(sys.executable).parent
SPLIT = """
import time
t0 = time.perf_counter()
import mlflow
from mlflow.tracking import MlflowClient
from retention.registry import registry_status
t1 = time.perf_counter()
client = MlflowClient()
client.search_registered_models(max_results=1)
t2 = time.perf_counter()
registry_status(client)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def ui_workers() -> int:
    """What ``make ui`` passes as ``--workers``: the cores this process may use, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def ui_times(uri: str, workers: int) -> tuple[float, float]:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "mlflow"), "ui", "--backend-store-uri", uri, "-h", "127.0.0.1", "-p", str(port),
                             "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    health = search = None
    try:
        while time.perf_counter() - start < 300:
            try:
                if health is None:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)  # noqa: S310
                    health = time.perf_counter() - start
                body = json.dumps({"max_results": 25}).encode()
                req = urllib.request.Request(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                                             data=body, headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=60).read()  # noqa: S310
                search = time.perf_counter() - start
                break
            except OSError:
                time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return health or float("nan"), search or float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    env_py = [str(BIN / "python")]
    rows: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        rows.setdefault("python -c 'import mlflow'", []).append(wall([*env_py, "-c", "import mlflow"]))
        rows.setdefault("retention registry status (whole command)", []).append(
            wall([str(BIN / "retention"), "registry", "status"]))
        out = subprocess.run([*env_py, "-c", SPLIT], check=True, capture_output=True, text=True).stdout.split()
        for label, value in zip(("  of which: importing MLflow and the project", "  the tracking store's first call "
                                 "(database open, MLflow's schema check)", "  the project's status queries"),
                                out, strict=True):
            rows.setdefault(label, []).append(float(value))
        for workers, who in ((4, "MLflow's default"), (ui_workers(), "make ui")):
            health, search = ui_times(uri, workers)
            rows.setdefault(f"mlflow ui, {workers} workers ({who}): until /health answers", []).append(health)
            rows.setdefault(f"mlflow ui, {workers} workers ({who}): until the first experiments search answers",
                            []).append(search)
    print(f"CPU: {cpu_name()}; store {uri}; medians of {args.repeats}\n")
    print("| what | seconds |\n| --- | ---: |")
    for label, values in rows.items():
        print(f"| {label} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
