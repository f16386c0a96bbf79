"""`make run`'s console: one screen up to the URL banner, no secrets, no errors, quiet when idle.

The real `manage.py devserver` (web, Celery worker and beat as child processes) runs
on a free port against a fresh database of its own on the suite's PostgreSQL server
and the suite's Redis database, exactly as `make run` would after the install.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings

from tests.conftest import child_env
from tests.stack import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

SCREEN_LINES = 40
IDLE_SECONDS = 65
BANNER_END = "Ctrl-C to stop web, worker and beat."


def _admin_connection():
    db = settings.DATABASES["default"]
    conn = psycopg2.connect(
        dbname="postgres", user=db["USER"], password=db.get("PASSWORD") or None,
        host=db["HOST"] or None, port=db.get("PORT") or None,
    )  # fmt: skip
    conn.autocommit = True
    return conn


@pytest.fixture
def console_database():
    """A database nobody else uses, so the devserver migrates it from nothing."""
    name = f"{settings.DATABASES['default']['NAME']}_console_{uuid.uuid4().hex[:8]}"
    conn = _admin_connection()
    with conn.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = child_env()["DATABASE_URL"].rsplit("/", 1)[0] + "/" + name
    yield url
    conn = _admin_connection()
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


class Console:
    """The merged stdout/stderr of a process, line by line, read in a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def read_until(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("devserver exited:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout}s:\n" + "\n".join(self.lines))

    def drain_for(self, seconds: float) -> list[str]:
        new: list[str] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            new.append(line)
        self.lines += new
        return new


def test_make_run_fits_one_screen_hides_the_secret_key_and_stays_quiet_when_idle(
    console_database, tmp_path
):
    port = free_port()
    env = child_env(DATABASE_URL=console_database, PORT=str(port), REENGAGE_DATA_DIR=str(tmp_path))
    env.pop("LOG_TASKS", None)
    # A terminal on stdin, as under `make run`: Enter prints the banner again.
    keyboard, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "devserver"], cwd=ROOT, env=env, text=True,
        stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    os.close(terminal)
    console = Console(proc)
    try:
        console.read_until(BANNER_END, timeout=150)
        up_to_banner = list(console.lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200
        idle = console.drain_for(IDLE_SECONDS)
        os.write(keyboard, b"\n")
        console.read_until(BANNER_END, timeout=10)
        again = console.lines[len(up_to_banner) + len(idle) :]
    finally:
        os.close(keyboard)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    seeded = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--json"], cwd=ROOT, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    demo = json.loads(seeded.stdout)
    everything = "\n".join(console.lines)
    assert len(up_to_banner) <= SCREEN_LINES, "\n".join(up_to_banner)
    assert "database: applied" in everything
    running = next(i for i, line in enumerate(up_to_banner) if "reengage is running at" in line)
    # The banner comes last, after the services said they are up.
    ready = next(i for i, line in enumerate(up_to_banner) if line.endswith(" ready."))
    assert ready < running
    assert f"http://127.0.0.1:{port}/admin/" in up_to_banner[running + 1]
    assert demo["secret_key"] and demo["secret_key"] not in everything
    assert "ERROR" not in everything and "Traceback" not in everything
    assert "Warning" not in "\n".join(up_to_banner)
    assert "(2, 10)" not in everything
    # Our own probe leaves no request lines (the test's one GET /healthz may).
    assert sum("/healthz HTTP" in line for line in up_to_banner) == 0
    assert len(idle) <= 3, "\n".join(idle)
    assert any(f"reengage is running at http://127.0.0.1:{port}/" in line for line in again)
    assert up_to_banner[-1].strip().startswith("Press Enter to show this again")
