"""Shared fixtures: a real Celery worker process, Redis clients, URLs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


def test_database_url() -> str:
    """The URL of the database pytest-django created, for child processes."""
    db = settings.DATABASES["default"]
    from urllib.parse import quote

    host = quote(db["HOST"] or "", safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    auth = db["USER"] + (f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{host}{port}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REENGAGE_EMBEDDED_SERVICES": "0",
        "PYTHONUNBUFFERED": "1",
        # Child processes follow the test's outbound policy (tests/audiences turn on
        # loopback for their local webhook receivers).
        "OUTBOUND_ALLOW_LOOPBACK": "1" if settings.OUTBOUND_ALLOW_LOOPBACK else "0",
    }
    env.update(extra)
    return env


@pytest.fixture
def celery_worker_process(db, transactional_db):
    """A real `celery worker` subprocess on the test database and Redis DB."""
    log = open(ROOT / ".data" / "test-worker.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "reengage", "worker", "--pool", "solo",
         "-l", "INFO", "-n", f"test-{os.getpid()}@%h", "--without-heartbeat",
         "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    from reengage.celery import app

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if app.control.ping(timeout=0.5, limit=1):
            break
        assert proc.poll() is None, (ROOT / ".data" / "test-worker.log").read_text()
    else:
        proc.kill()
        pytest.fail("celery worker did not answer a ping within 30 s")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(autouse=True)
def _clean_partitioned_events(request):
    """Transactional tests end with a flush of Django's tables, but the events table
    is not one of them (unmanaged, partitioned): empty it too."""
    yield
    if {"transactional_db", "live_server"} & set(request.fixturenames):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE tracking_event")


@pytest.fixture(scope="session", autouse=True)
def _empty_database_at_start(django_db_setup, django_db_blocker):
    """--reuse-db keeps the database between runs, and a run stopped in the middle of
    a transactional test (killed, timed out) leaves that test's rows behind, which
    every later count would see. Start each run the way a transactional test ends:
    Django's tables flushed (its post_migrate puts back the permissions and the
    marketers' group) and the events table, which is not one of them, emptied too.

    When no collected test uses the database (`pytest tests/test_docs_links.py`),
    pytest-django creates no test database and the connection still names the
    real one from DATABASE_URL: leave that alone.
    """
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.base.creation import TEST_DATABASE_PREFIX

    if not connection.settings_dict["NAME"].startswith(TEST_DATABASE_PREFIX):
        return
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE tracking_event")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell a failure
    (the browser tests save screenshots and console logs of failed tests)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
