"""The public-endpoint attacks of issue 14, replayed over HTTP against gunicorn as the
image runs it: every one is a 4xx naming the field, and an honest browser's events
are still stored."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT, child_env
from tests.factories import make_site, segment_event
from tests.stack import free_port, wait_for
from tracking import flush
from tracking.keys import clear_key_cache
from tracking.models import Event

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Gunicorn:
    def __init__(self, **env: str):
        self.port = free_port()
        self.log = open(ROOT / ".data" / f"test-gunicorn-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "reengage.wsgi:application", "-b",
             f"127.0.0.1:{self.port}", "-w", "1", "--timeout", "30"],
            cwd=ROOT, env=child_env(**env), stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: self.request("GET", "/healthz")[0] in (200, 503), what="gunicorn")

    def request(self, method: str, path: str, body=None, key: str = "") -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        data = body.encode() if isinstance(body, str) else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except OSError:
            return 0, {}

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _json(raw: bytes) -> dict:
    try:
        return json.loads(raw)
    except ValueError:
        return {}


@pytest.fixture
def web(redis_client):
    server = Gunicorn()
    yield server
    server.stop()


def batch(*events, sent_at=None) -> str:
    body = {"batch": list(events)}
    if sent_at:
        body["sentAt"] = sent_at
    return json.dumps(body)


def test_bad_times_numbers_and_nul_bytes_are_4xx_and_honest_events_are_stored(web):
    clear_key_cache()
    site = make_site()
    flush.ensure_group(flush.buffer.client())
    good = segment_event(anonymousId="honest-browser", event="Product Viewed",
                         properties={"price": "19.99", "products": [{"price": 49.5}]})  # fmt: skip
    attacks = {
        "batch[0].timestamp": batch(segment_event(timestamp="0001-01-01T00:00:00+01:00")),
        "batch[1].timestamp": batch(good, segment_event(timestamp="9999-12-31T23:59:59-01:00")),
        "sentAt": batch(segment_event(timestamp="0001-01-01T00:00:00Z"),
                        sent_at="9999-12-31T23:59:59Z"),
        "batch[1].properties.x": '{"batch": [' + json.dumps(good) + ', {"type": "track",'
        ' "event": "E", "anonymousId": "a", "properties": {"x": 1e999}}]}',
        "batch[0].properties.products[0].price": batch(
            segment_event(properties={"products": [{"price": "1e10000000"}]})
        ),
    }  # fmt: skip
    for field, body in attacks.items():
        status, answer = web.request("POST", "/v1/batch", body, key=site.write_key)
        assert (status, answer.get("field")) == (400, field), (field, status, answer)

    status, answer = web.request("GET", f"/v1/audiences/{site.write_key}/a%00b")
    assert (status, answer.get("field")) == (400, "anonymousId")
    status, answer = web.request(
        "DELETE", "/api/v1/privacy/person?anonymousId=a%00b", key=site.secret_key
    )
    assert (status, answer.get("field")) == (400, "anonymousId")

    # Nothing was acknowledged and lost: the honest event, sent alone, is stored.
    assert web.request("POST", "/v1/batch", batch(good), key=site.write_key)[0] == 200
    deadline = time.monotonic() + 10
    while not Event.objects.filter(site=site, message_id=good["messageId"]).exists():
        flush.flush_once()
        assert time.monotonic() < deadline
    assert flush.dead_letters() == []


def test_a_production_server_does_not_serve_the_demo_store(redis_client):
    server = Gunicorn(
        DEBUG="0", SECRET_KEY="s" * 60, FIELD_ENCRYPTION_KEY="f" * 40,
        ANYMAIL_WEBHOOK_SECRET="user:password", SECURE_SSL_REDIRECT="0",
    )  # fmt: skip
    try:
        assert server.request("GET", "/demo/")[0] == 404
        assert server.request("GET", "/demo/signup/")[0] == 404
    finally:
        server.stop()
