"""Shared fixtures. Tests never touch the network: raw data comes from the local mirror."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mirror() -> Path:
    return Path(os.environ.get("RETENTION_DATA_MIRROR", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = _mirror()
    if not (path / "telco").is_dir():
        pytest.fail(
            f"the data mirror is missing at {path}: set RETENTION_DATA_MIRROR to a folder laid out like "
            "../shared/data (see docs/data.md, 'Data sources')."
        )
    return path


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Fail loudly if anything tries to open a socket to a non-loopback host."""
    import socket

    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
            raise RuntimeError(f"test tried to reach the network: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _traces_only_into_a_test_store(request):
    """A decision records an MLflow trace, exported in the background to the store current *then*. A
    unit test without the ``tracking`` store would send it wherever an earlier test left MLflow (a
    "No Experiment with id=1" warning, or a trace in the checkout's ./mlflow.db), so tracing is off
    there. Tests with ``tracking`` and integration tests (each in its own store) keep it on."""
    import mlflow

    if "tracking" in request.fixturenames or request.node.get_closest_marker("integration"):
        yield
        return
    mlflow.tracing.disable()
    try:
        yield
    finally:
        mlflow.tracing.enable()


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """An isolated MLflow store: sqlite in tmp_path, artifacts in tmp_path/mlartifacts (cwd = tmp_path)."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "retention-test")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # mlflow.projects.run launches `python entrypoints/...`: make that the interpreter running the tests.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    old_uri = mlflow.get_tracking_uri()  # process state the steps set; it wins over the variable
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    from retention.tracking import configure_tracking

    configure_tracking()  # "retention-test" here, as a step makes it: an earlier test's active id points elsewhere
    yield tmp_path
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.flush_trace_async_logging()  # traces queued in this test go to its store before it is gone
    mlflow.set_tracking_uri(old_uri)


@pytest.fixture
def raw_dir(tmp_path, mirror) -> Path:
    """A --data-dir holding copies of the mirror's Telco CSV and Bank gzip, for corrupting."""
    d = tmp_path / "raw"
    (d / "telco").mkdir(parents=True)
    (d / "bank").mkdir()
    shutil.copy(mirror / "telco" / "WA_Fn-UseC_-Telco-Customer-Churn.csv", d / "telco")
    shutil.copy(mirror / "bank" / "bank-additional-full.csv.gz", d / "bank")
    return d


# ----------------------------------------------------------------------------- a real Postgres server
@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session (retention/cloud/postgres.py).

    Uses the machine's Debian packages; when they are missing it installs them with apt-get (as
    root) or fails with the command to run. Stopped and deleted at the end of the session.
    """
    from retention.cloud.postgres import LocalPostgres

    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path) -> str:
    """A fresh, empty ledger database: sqlite in tmp_path, or a new database on the session's Postgres."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    server = request.getfixturevalue("postgres")
    return server.create_database(f"ledger_{abs(hash(request.node.nodeid)) % 10**9}")
