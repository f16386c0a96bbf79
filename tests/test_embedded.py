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
