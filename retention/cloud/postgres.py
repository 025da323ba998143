"""A throwaway PostgreSQL cluster for tests, benchmarks and the local tracking server.

The Debian packages (``postgresql``: ``/usr/lib/postgresql/<major>/bin``) are located, or installed
with ``apt-get`` when missing and allowed (``RETENTION_INSTALL_POSTGRES=1``, the default when
running as root). ``initdb`` refuses to run as root: as root the cluster belongs to the
``postgres`` system user (created by the package) and every server command runs through
``runuser -u postgres``; as anyone else it runs as that user. The cluster listens on 127.0.0.1
and a Unix socket in its own folder, trusts local connections, and is deleted on :meth:`stop`.

Usage::

    with LocalPostgres() as pg:
        url = pg.create_database("ledger")   # postgresql+psycopg2://postgres@127.0.0.1:PORT/ledger
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from retention.errors import RetentionError

DEBIAN_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"


class PostgresUnavailable(RetentionError):
    """PostgreSQL's server programs cannot be found or installed on this machine."""

    exit_code = 7


def _major(path: Path) -> float:
    try:
        return float(path.name)
    except ValueError:
        return -1.0


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb`` and ``pg_ctl`` ($PG_BIN_DIR wins)."""
    env = os.environ.get("PG_BIN_DIR")
    candidates = [Path(env)] if env else []
    if DEBIAN_ROOT.is_dir():
        candidates += [d / "bin" for d in sorted(DEBIAN_ROOT.iterdir(), key=_major, reverse=True)]
    for d in candidates:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def install_debian_packages() -> None:
    """``apt-get install postgresql`` (root only). Raises :class:`PostgresUnavailable` with the fix."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PostgresUnavailable(
            "PostgreSQL is not installed and cannot be installed from here (needs root and apt-get). Install it "
            "with `sudo apt-get install -y postgresql`, or point PG_BIN_DIR at a folder holding initdb and pg_ctl.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                                 "postgresql"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise PostgresUnavailable(f"`{' '.join(cmd)}` failed:\n{done.stderr[-2000:]}")


def ensure_bin_dir() -> Path:
    """:func:`find_bin_dir`, installing the Debian packages first when they are missing and allowed."""
    found = find_bin_dir()
    if found:
        return found
    allowed = os.environ.get("RETENTION_INSTALL_POSTGRES", "1" if os.geteuid() == 0 else "0") == "1"
    if not allowed:
        raise PostgresUnavailable("PostgreSQL is not installed: `sudo apt-get install -y postgresql` (or set "
                                  "RETENTION_INSTALL_POSTGRES=1 when running as root), or set PG_BIN_DIR")
    install_debian_packages()
    found = find_bin_dir()
    if not found:
        raise PostgresUnavailable("apt-get installed postgresql but initdb/pg_ctl are still not found")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """Start a fresh cluster in a temporary folder; :meth:`stop` stops it and deletes the folder.

    Parameters
    ----------
    port:
        TCP port on 127.0.0.1 (default: a free one).
    base_dir:
        Parent of the cluster's folder (default: the system temp dir). It must be reachable by the
        ``postgres`` user when running as root, so not a 0700 folder such as pytest's tmp_path.
    """

    def __init__(self, port: int | None = None, base_dir: str | os.PathLike | None = None):
        self.port = port or free_port()
        self.base_dir = base_dir
        self.dir: Path | None = None
        self.bin_dir: Path | None = None
        self.running = False

    # ------------------------------------------------------------------ plumbing
    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SYSTEM_USER, "--", *args]
        return args

    def _run(self, args: list[str], what: str) -> None:
        done = subprocess.run(self._as_owner(args), capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            log = (self.dir / "server.log") if self.dir else None
            tail = log.read_text()[-1500:] if log and log.exists() else ""
            raise PostgresUnavailable(f"{what} failed ({done.returncode}): {done.stderr.strip()[-1500:]}\n{tail}")

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (psycopg2 driver) of ``database`` on this cluster, as the superuser."""
        return f"postgresql+psycopg2://{SYSTEM_USER}@127.0.0.1:{self.port}/{database}"

    # ------------------------------------------------------------------ life cycle
    def start(self) -> LocalPostgres:
        self.bin_dir = ensure_bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="retention-pg-", dir=self.base_dir))
        if os.geteuid() == 0:
            shutil.chown(self.dir, SYSTEM_USER, SYSTEM_USER)
        data = self.dir / "data"
        self._run([str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", SYSTEM_USER, "-E", "UTF8",
                   "--no-sync"], "initdb")
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.dir / "server.log"),
                   "-w", "-t", "60", "start"], "pg_ctl start")
        self.running = True
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user=SYSTEM_USER, dbname="postgres").close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def create_database(self, name: str) -> str:
        """Create ``name`` (dropping it first if it exists); return its SQLAlchemy URL."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=SYSTEM_USER, dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url_for(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        if self.running and self.bin_dir is not None:
            subprocess.run(self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast",
                                           "-w", "stop"]), capture_output=True, cwd=self.dir)
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
