"""Slow and abusive clients against the production web, as docker-compose.yml runs it:
gunicorn (the image's entrypoint: sync workers) behind Caddy with docker/Caddyfile.

Clients that trickle their headers a byte at a time hold a sync worker each: straight
against gunicorn, a handful of them make /healthz stop answering (the first test shows
the attack works here, so the second cannot pass by accident). Through Caddy the same
clients hold only Caddy's goroutines, and /healthz keeps answering."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT, child_env
from tests.stack import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CADDY = shutil.which("caddy")
SLOW_CLIENTS = 8
TRICKLE_SECONDS = 20


def answers(port: int, timeout: float = 5) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout)
    except urllib.error.HTTPError:
        return True  # a 503 (no worker in this test) is an answer
    except OSError:
        return False
    return True


class SlowClients:
    """Connections that send a request line, then one header byte every half second."""

    def __init__(self, port: int, count: int = SLOW_CLIENTS):
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._trickle, args=(port,), daemon=True)
                        for _ in range(count)]  # fmt: skip
        for thread in self.threads:
            thread.start()
        time.sleep(1)  # every connection accepted and started

    def _trickle(self, port: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                deadline = time.monotonic() + TRICKLE_SECONDS
                while not self.stop.is_set() and time.monotonic() < deadline:
                    sock.sendall(b"a")
                    self.stop.wait(0.5)
        except OSError:
            pass  # the server closed it: exactly what it should do, eventually

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def start(args: list[str], log_name: str, env: dict[str, str]) -> subprocess.Popen:
    log = open(ROOT / ".data" / log_name, "w")  # noqa: SIM115
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def gunicorn(redis_client):
    """The image's web command (docker/entrypoint.sh): two sync workers."""
    port = free_port()
    process = start(
        [sys.executable, "-m", "gunicorn", "reengage.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        f"test-slow-gunicorn-{port}.log", child_env(),
    )  # fmt: skip
    wait_for(lambda: answers(port), what="gunicorn")
    yield port
    stop(process)


@pytest.fixture
def caddy(gunicorn, tmp_path):
    if CADDY is None:
        if os.environ.get("CI"):
            pytest.fail("caddy is not installed (.ci/run installs Debian's caddy)")
        pytest.skip("caddy is not installed (apt-get install caddy)")
    port = free_port()
    env = {**child_env(), "SITE_ADDRESS": f":{port}", "UPSTREAM": f"127.0.0.1:{gunicorn}",
           "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}  # fmt: skip
    process = start(
        [CADDY, "run", "--config", str(ROOT / "docker" / "Caddyfile"), "--adapter", "caddyfile"],
        f"test-slow-caddy-{port}.log", env,
    )  # fmt: skip
    wait_for(lambda: answers(port), what="caddy")
    yield port
    stop(process)


def test_slow_clients_starve_gunicorn_when_nothing_stands_in_front(gunicorn):
    clients = SlowClients(gunicorn)
    try:
        assert not answers(gunicorn, timeout=5), "the attack did not work: the test is void"
    finally:
        clients.close()


def test_through_caddy_health_keeps_answering_while_slow_clients_trickle(caddy):
    clients = SlowClients(caddy, count=SLOW_CLIENTS * 4)
    try:
        started = time.monotonic()
        for _ in range(5):
            assert answers(caddy, timeout=5)
        assert time.monotonic() - started < 10
    finally:
        clients.close()
