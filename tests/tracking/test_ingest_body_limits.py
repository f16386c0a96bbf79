"""Bodies are bounded before they are read: a chunked body without Content-Length is
refused (411) without reading it, in process and behind a real gunicorn."""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import time

import pytest
from django.core.handlers.wsgi import WSGIHandler

from tests.conftest import ROOT, child_env
from tests.stack import free_port, wait_for

pytestmark = pytest.mark.django_db


class EndlessBody(io.RawIOBase):
    """A request body that never ends, counting what the server read."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = b" " * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def call_wsgi(environ: dict) -> tuple[str, dict, bytes]:
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(WSGIHandler()(environ, start_response))
    return answer["status"], answer["headers"], body


def environ_for(body, **extra) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/batch",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": body,
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **extra,
    }


def test_a_body_without_content_length_is_411_and_is_not_read():
    body = EndlessBody()
    status, _, content = call_wsgi(environ_for(body))
    assert status.startswith("411")
    assert json.loads(content)["field"] == "Content-Length"
    assert body.read_bytes == 0


def test_a_content_length_over_the_limit_is_413_and_the_body_is_not_read():
    body = EndlessBody()
    status, _, content = call_wsgi(environ_for(body, CONTENT_LENGTH=str(50 * 1024 * 1024)))
    assert status.startswith("413")
    assert json.loads(content)["field"] == "body"
    assert body.read_bytes == 0


@pytest.fixture
def gunicorn():
    port = free_port()
    log = open(ROOT / ".data" / "test-gunicorn-limits.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "reengage.wsgi:application",
         "-b", f"127.0.0.1:{port}", "-w", "1", "--timeout", "30"],
        cwd=ROOT, env=child_env(DEBUG="1"), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def answers() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    try:
        wait_for(answers, timeout=30, what="gunicorn")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_behind_gunicorn_a_chunked_body_is_answered_before_it_ends(gunicorn):
    auth = base64.b64encode(b"wk_unknown:").decode()
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Basic " + auth.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # The start of a body that never ends (no terminating chunk is ever sent):
        # a server that read it all would wait for the rest until the timeout.
        chunk = b" " * 65536
        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411"), head
    assert json.loads(body)["field"] == "Content-Length"
