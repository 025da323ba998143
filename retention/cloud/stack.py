"""The tracking server stack: ``mlflow server`` on a Postgres backend store, artifacts proxied to GCS.

Locally (``make tracking-server``, and the integration test) every part is real and throwaway:

* a PostgreSQL cluster started as a non-root user (:class:`retention.cloud.postgres.LocalPostgres`);
* ``gcp-storage-emulator`` serving the GCS JSON API on 127.0.0.1 (``STORAGE_EMULATOR_HOST``);
* ``mlflow server --backend-store-uri postgresql+psycopg2://... --artifacts-destination gs://BUCKET/mlflow``.

Clients log artifacts through the server (``mlflow-artifacts:/`` URIs), so only the server needs
storage credentials. In the cloud the same command runs with ``--backend-store-uri`` pointing at
Cloud SQL and a real bucket (``BACKEND_STORE_URI`` set, ``STORAGE_EMULATOR_HOST`` unset): nothing
local is started then.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from retention.cloud.postgres import LocalPostgres, free_port
from retention.errors import RetentionError

DEFAULT_BUCKET = "retention-mlflow"


class StackError(RetentionError):
    """A part of the tracking stack did not start (the message names it and shows its log)."""

    exit_code = 7


def _bin(name: str) -> str:
    """``name`` from the running interpreter's environment (the project's .venv), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise StackError(f"'{name}' is not installed: run `make venv` (it comes with the dev extras)")
    return found


def _wait_http(url: str, proc: subprocess.Popen, log: Path, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - our own loopback server
                if r.status < 500:
                    return
        except OSError:
            time.sleep(0.3)
    raise StackError(f"{what} did not answer {url} within {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group: uvicorn workers too
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    handle = log.open("ab")
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)


@dataclass
class Stack:
    """What a started stack offers: where to point clients and where things land."""

    tracking_uri: str
    backend_store_uri: str
    artifacts_destination: str
    storage_emulator_host: str | None
    log_dir: Path


def start_emulator(port: int, bucket: str, log: Path) -> tuple[subprocess.Popen, str]:
    cmd = [_bin("gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
           "--default-bucket", bucket]
    proc = _spawn(cmd, log)
    host = f"http://127.0.0.1:{port}"
    _wait_http(f"{host}/storage/v1/b/{bucket}", proc, log, "gcp-storage-emulator", 60)
    return proc, host


def start_server(backend_store_uri: str, artifacts_destination: str, port: int, log: Path,
                 emulator_host: str | None, workers: int = 1) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    if emulator_host:
        env["STORAGE_EMULATOR_HOST"] = emulator_host
    cmd = [_bin("mlflow"), "server", "--backend-store-uri", backend_store_uri,
           "--artifacts-destination", artifacts_destination, "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]
    proc = _spawn(cmd, log, env)
    _wait_http(f"http://127.0.0.1:{port}/health", proc, log, "mlflow server", 180)
    return proc


@contextlib.contextmanager
def local_stack(port: int | None = None, bucket: str = DEFAULT_BUCKET, backend_store_uri: str | None = None,
                log_dir: Path | None = None, postgres: LocalPostgres | None = None,
                workers: int = 1) -> Iterator[Stack]:
    """Start (as needed) Postgres, the GCS emulator and ``mlflow server``; stop them all on exit.

    ``backend_store_uri``: an existing database (e.g. Cloud SQL through its proxy); default: a
    database ``mlflow`` on ``postgres`` (a running :class:`LocalPostgres`) or on a new throwaway
    cluster. With ``STORAGE_EMULATOR_HOST`` already set, that emulator is used instead of a new one.
    """
    import tempfile

    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="retention-stack-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    own_pg: LocalPostgres | None = None
    emulator = server = None
    try:
        if backend_store_uri is None:
            if postgres is None:
                own_pg = postgres = LocalPostgres().start()
            backend_store_uri = postgres.create_database("mlflow")
        emulator_host = os.environ.get("STORAGE_EMULATOR_HOST")
        if not emulator_host:
            emulator, emulator_host = start_emulator(free_port(), bucket, log_dir / "gcs-emulator.log")
        destination = f"gs://{bucket}/mlflow"
        port = port or free_port()
        server = start_server(backend_store_uri, destination, port, log_dir / "mlflow-server.log", emulator_host,
                              workers)
        yield Stack(f"http://127.0.0.1:{port}", backend_store_uri, destination, emulator_host, log_dir)
    finally:
        _stop(server)
        _stop(emulator)
        if own_pg is not None:
            own_pg.stop()


def main(argv: list[str] | None = None) -> int:
    """``make tracking-server``: run the local stack in the foreground until Ctrl-C."""
    p = argparse.ArgumentParser(prog="python -m retention.cloud.stack", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    p.add_argument("--bucket", default=os.environ.get("BUCKET", DEFAULT_BUCKET))
    p.add_argument("--backend-store-uri", default=os.environ.get("BACKEND_STORE_URI") or None,
                   help="use this database instead of a throwaway Postgres cluster")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    stop = {"now": False}

    def on_signal(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        with local_stack(args.port, args.bucket, args.backend_store_uri, Path("tracking-server"),
                         workers=args.workers) as stack:
            print(f"tracking server: {stack.tracking_uri}\n"
                  f"  backend store: {stack.backend_store_uri}\n"
                  f"  artifacts:     {stack.artifacts_destination} (GCS emulator {stack.storage_emulator_host})\n"
                  f"  logs:          {stack.log_dir}/\n"
                  f"Point the project at it:  export MLFLOW_TRACKING_URI={stack.tracking_uri}\n"
                  "Ctrl-C stops everything (the throwaway database and bucket go with it).", flush=True)
            while not stop["now"]:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except RetentionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print("tracking server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
