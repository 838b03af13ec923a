"""The harness's PostgreSQL cluster: a real server that wants the password over TCP,
keeps its data across a restart, and leaves nothing behind."""

from __future__ import annotations

import psycopg
import pytest

from harness.postgres import PostgresCluster


def test_cluster_serves_password_logins_and_cleans_up() -> None:
    with PostgresCluster() as cluster:
        db = cluster.create_database()
        with db.connect() as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.execute("SELECT current_user").fetchone() == (cluster.user,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(db.url, password="not-" + db.password, connect_timeout=5)
        cluster.restart()
        with db.connect() as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
        cluster.drop_database(db.name)
        with pytest.raises(psycopg.OperationalError, match="does not exist"):
            db.connect()
        assert db.password not in repr(cluster) + repr(db)
        directory = cluster.directory
    assert not cluster.running
    assert not directory.exists()
