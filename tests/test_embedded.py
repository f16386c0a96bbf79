"""The embedded PostgreSQL and Redis: started, shared, and stopped by the last user."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
import redis

from reengage import embedded
from reengage.pg_tuning import WRITE_TUNING

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

HOLD = """
import os, sys, time
from reengage import embedded
urls = embedded.acquire(postgres=True, redis=True)
print(urls["DATABASE_URL"], urls["REDIS_URL"], flush=True)
sys.stdin.readline()
embedded.release()
"""


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    directory = tmp_path / "data"
    monkeypatch.setenv("REENGAGE_DATA_DIR", str(directory))
    yield directory
    embedded.main(["embedded", "stop"])


def test_services_start_share_and_stop_with_the_last_user(data_dir):
    env = {**os.environ, "REENGAGE_DATA_DIR": str(data_dir)}
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD], cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    database_url, redis_url = first.stdout.readline().split()

    # A second process joins the same servers instead of starting new ones.
    urls = embedded.acquire(postgres=True, redis=True)
    assert urls == {"DATABASE_URL": database_url, "REDIS_URL": redis_url}

    with psycopg2.connect(database_url.replace("postgres://", "postgresql://")) as conn:
        with conn.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            assert cursor.fetchone() == ("reengage",)
    assert redis.Redis.from_url(redis_url).ping()

    # The first leaves: the servers stay up for the second.
    first.communicate("\n", timeout=30)
    assert embedded.status()["postgres_running"]
    assert redis.Redis.from_url(redis_url).ping()

    # The last leaves: both stop, nothing is left running.
    assert embedded.release() is True
    status = embedded.status()
    assert not status["postgres_running"]
    assert status["redis_pid"] is None
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()


def test_a_crashed_user_does_not_keep_the_services_alive(data_dir):
    env = {**os.environ, "REENGAGE_DATA_DIR": str(data_dir)}
    crashed = subprocess.Popen(
        [sys.executable, "-c", HOLD], cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    crashed.stdout.readline()
    crashed.kill()
    crashed.wait()
    embedded.acquire(postgres=True, redis=True)
    assert embedded.status()["clients"] == [os.getpid()]
    assert embedded.release() is True


def test_data_survives_a_restart(data_dir):
    url = embedded.acquire(postgres=False, redis=True)["REDIS_URL"]
    redis.Redis.from_url(url).set("kept", "yes")
    time.sleep(1.2)  # appendfsync everysec
    embedded.release()
    url = embedded.acquire(postgres=False, redis=True)["REDIS_URL"]
    assert redis.Redis.from_url(url).get("kept") == b"yes"
    embedded.release()


SHOW_TUNING = """
import psycopg2
from reengage import embedded
url = embedded.acquire(postgres=True, redis=False)["DATABASE_URL"]
with psycopg2.connect(url.replace("postgres://", "postgresql://")) as conn:
    with conn.cursor() as cursor:
        for name in [*embedded.embedded_tuning(), "fsync", "synchronous_commit", "full_page_writes"]:
            cursor.execute(f"SHOW {name}")
            print(name, cursor.fetchone()[0])
embedded.release()
"""


def test_postgres_runs_with_the_write_tuning_in_a_new_and_an_existing_data_dir(data_dir):
    tuning = embedded.embedded_tuning()
    # The shipped settings, but a development-sized shared_buffers, and pglz where the
    # wheel's PostgreSQL has no lz4.
    dev_only = {"shared_buffers": "256MB", "wal_compression": tuning["wal_compression"]}
    assert tuning == {**WRITE_TUNING, **dev_only}
    assert tuning["wal_compression"] in (WRITE_TUNING["wal_compression"], "pglz")
    expected = {**tuning, "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    env = {**os.environ, "REENGAGE_DATA_DIR": str(data_dir)}
    # A new data directory, then the same one started again (each run is the last user,
    # so the server stops in between): the settings apply both times, written once.
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", SHOW_TUNING], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert dict(line.split(" ", 1) for line in result.stdout.splitlines()) == expected
        assert not embedded.status()["postgres_running"]
    conf = (data_dir / "postgres" / "postgresql.conf").read_text().splitlines()
    assert conf.count(embedded.TUNING_INCLUDE) == 1
