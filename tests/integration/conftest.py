"""One bundled `retention` model (smoke profile, real data mirror) shared by the REST and Spark tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from retention.cloud.postgres import free_port
from retention.config import Config, load_config
from retention.data.steps import data as data_step
from retention.messaging import steps as messaging_steps
from retention.policy.model import policy_spec
from retention.policy.registry import log_policy
from retention.serving.steps import bundle as bundle_step
from retention.tabular import steps as tabular_steps

BUDGET = 40.0
MODEL_URI = "models:/retention@champion"


@dataclass(frozen=True)
class Bundle:
    home: Path
    cfg: Config
    env: dict[str, str]  # the tracking store that holds MODEL_URI


@contextlib.contextmanager
def within(home: Path, env: dict[str, str]):
    """Run in ``home`` with ``env`` set; restore the working directory and variables afterwards.

    MLflow's tracking URI is also process state (``mlflow.set_tracking_uri``, which the steps call
    and which wins over the variable), so it is switched and restored too.
    """
    old = {k: os.environ.get(k) for k in env}
    old_uri = mlflow.get_tracking_uri()
    cwd = Path.cwd()
    os.environ.update(env)
    if "MLFLOW_TRACKING_URI" in env:
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    os.chdir(home)
    try:
        yield
    finally:
        mlflow.flush_trace_async_logging()  # traces queued here go to this store, not the next one
        os.chdir(cwd)
        mlflow.set_tracking_uri(old_uri)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_bundle(home: Path, env: dict[str, str], mirror: Path, tag: str) -> Bundle:
    """The smoke pipeline step by step in ``home`` under ``env``, through to a ``retention`` champion.

    The champion policy is the greedy rule (registered with tag ``test=tag``), so tests know
    contacts will happen.
    """
    with within(home, env):
        cfg = load_config("smoke", {"data.mirror_dir": str(mirror), "data.processed_dir": str(home / "processed"),
                                    "data.allow_download": False, "serving.campaign_budget": BUDGET})
        data = data_step(cfg, {"profile": "smoke"}, progress=False)
        risk = tabular_steps.train_risk(cfg, {"profile": "smoke", "data_run_id": data})
        accept = tabular_steps.train_accept(cfg, {"profile": "smoke", "data_run_id": data})
        tabular_steps.promote(cfg, {"profile": "smoke", "risk_run_id": risk, "accept_run_id": accept})
        messaging_steps.sft(cfg, {"profile": "smoke", "data_run_id": data}, progress=False)
        info = log_policy(policy_spec("greedy_ev", cfg.env), None, {"test": tag})
        MlflowClient().set_registered_model_alias("retention-policy", "champion", info.registered_model_version)
        bundle_step(cfg, {"profile": "smoke", "data_run_id": data}, progress=False)
        assert MlflowClient().get_model_version_by_alias("retention", "champion")
    return Bundle(home, cfg, env)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, mirror) -> Bundle:
    home = tmp_path_factory.mktemp("bundle")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "MLFLOW_EXPERIMENT_NAME": "serve-test"}
    return build_bundle(home, env, mirror, "serving")


def start_server(bundle: Bundle, ledger_url: str, port: int | None = None) -> tuple[int, subprocess.Popen]:
    """`mlflow models serve` of the bundle's champion on loopback, in its own process group; waits for /ping."""
    port = port or free_port()
    log = bundle.home / f"server-{port}.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", MODEL_URI,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **bundle.env, "RETENTION_LEDGER_URL": ledger_url,
             "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},  # serve runs uvicorn
        cwd=bundle.home, stdout=subprocess.DEVNULL, stderr=open(log, "w"), start_new_session=True)
    for _ in range(180):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)  # noqa: S310 - loopback only
            return port, proc
        except OSError:
            if proc.poll() is not None:
                pytest.fail("server died:\n" + log.read_text()[-3000:])
            time.sleep(1)
    stop_server(proc)
    pytest.fail("server did not answer /ping:\n" + log.read_text()[-3000:])


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop the server's whole process group (``SIGKILL`` for a crash)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=30)
