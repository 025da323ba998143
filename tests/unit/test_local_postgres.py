"""Locating (or refusing to install) PostgreSQL, and the throwaway cluster's life cycle."""

from __future__ import annotations

import os

import pytest

from retention.cloud import postgres as pgmod
from retention.cloud.postgres import LocalPostgres, PostgresUnavailable, ensure_bin_dir, find_bin_dir


def _fake_bin(folder):
    folder.mkdir(parents=True)
    for name in ("initdb", "pg_ctl"):
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return folder


def test_the_newest_debian_major_wins_and_pg_bin_dir_overrides(tmp_path, monkeypatch):
    root = tmp_path / "postgresql"
    _fake_bin(root / "9.6" / "bin")
    newest = _fake_bin(root / "16" / "bin")
    (root / "17" / "bin").mkdir(parents=True)  # an incomplete install is skipped
    monkeypatch.setattr(pgmod, "DEBIAN_ROOT", root)
    monkeypatch.delenv("PG_BIN_DIR", raising=False)
    assert find_bin_dir() == newest
    mine = _fake_bin(tmp_path / "mine")
    monkeypatch.setenv("PG_BIN_DIR", str(mine))
    assert find_bin_dir() == mine


def test_a_missing_install_that_may_not_be_installed_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setattr(pgmod, "DEBIAN_ROOT", tmp_path / "nothing")
    monkeypatch.delenv("PG_BIN_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("RETENTION_INSTALL_POSTGRES", "0")
    with pytest.raises(PostgresUnavailable, match="apt-get install -y postgresql.*PG_BIN_DIR"):
        ensure_bin_dir()


def test_the_cluster_answers_and_leaves_nothing_behind(postgres):
    import psycopg2

    url = postgres.create_database("lifecycle")
    assert url.endswith(f":{postgres.port}/lifecycle")
    fresh = LocalPostgres().start()
    folder = fresh.dir
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=fresh.port, user="postgres", dbname="postgres")
        with conn.cursor() as cur:
            cur.execute("show fsync")
            assert cur.fetchone()[0] == "off"
        conn.close()
        if os.geteuid() == 0:
            assert folder.stat().st_uid != 0  # initdb refuses root: the cluster belongs to the postgres user
    finally:
        fresh.stop()
    assert not folder.exists()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host="127.0.0.1", port=fresh.port, user="postgres", dbname="postgres", connect_timeout=3)
