"""Body limits and bounded memory on the public email endpoints.

Requests go through Django's real WSGI handler with a body that is generated
while it is read (never held by the test), so tracemalloc sees only what the
server allocates: an oversized body must be refused before it is read, and
many large random bodies in a row must leave memory where it was.
"""

from __future__ import annotations

import base64
import gc
import logging
import os
import tracemalloc
from contextlib import contextmanager

import pytest
from _pytest.logging import LogCaptureHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings

from campaigns.email.body_limit import FORM_MAX_BYTES
from campaigns.email.rendering import UNSUBSCRIBE_SALT, message_token
from campaigns.models import Message, Suppression
from tests.email.conftest import T0, make_campaign, queue_messages

pytestmark = pytest.mark.django_db

SECRET = "hooks:correct-horse-battery"
AUTH = "Basic " + base64.b64encode(SECRET.encode()).decode()
MB = 1024 * 1024


class RandomBody:
    """A wsgi.input of `size` random bytes, made as they are read; counts what was read."""

    def __init__(self, size: int):
        self.left, self.read_bytes = size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        n = min(n, 64 * 1024)
        self.left -= n
        self.read_bytes += n
        return os.urandom(n)

    def readline(self, n: int = -1) -> bytes:
        return self.read(n if n and n > 0 else 1024)


@contextmanager
def wsgi():
    """Django's WSGI handler, minus the per-request connection closing the test's
    transaction cannot survive (django.test.Client does the same), and minus
    pytest's log capture, which keeps every record (and the request a
    `django.request` record references) until the test ends; a real log handler
    writes a record and drops it."""
    root = logging.getLogger()
    capturing = [h for h in root.handlers if isinstance(h, LogCaptureHandler)]
    for handler in capturing:
        root.removeHandler(handler)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        for handler in capturing:
            root.addHandler(handler)


def call(handler, path: str, body: RandomBody, size: int, content_type: str) -> int:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver", "wsgi.url_scheme": "http", "wsgi.input": body,
        "wsgi.errors": open(os.devnull, "w"),  # noqa: SIM115
        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(size), "HTTP_AUTHORIZATION": AUTH,
        "REMOTE_ADDR": "192.0.2.1",
    }  # fmt: skip
    status = []
    result = handler(environ, lambda s, headers, exc_info=None: status.append(s))
    try:
        b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
        environ["wsgi.errors"].close()
    return int(status[0].split()[0])


@pytest.fixture
def paths():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=T0)
    token = message_token(message.pk, UNSUBSCRIBE_SALT)
    return {
        "unsubscribe": (f"/email/unsubscribe/{token}/", "multipart/form-data; boundary=b"),
        "preferences": (f"/email/preferences/{token}/", "application/x-www-form-urlencoded"),
        "postmark": ("/anymail/postmark/tracking/", "application/json"),
        "mailgun": ("/anymail/mailgun/tracking/", "application/json"),
        "sendgrid": ("/anymail/sendgrid/tracking/", "application/json"),
    }


ANYMAIL = {"WEBHOOK_SECRET": [SECRET], "MAILGUN_WEBHOOK_SIGNING_KEY": "key-x"}


@override_settings(ANYMAIL=ANYMAIL)
@pytest.mark.parametrize(
    "endpoint", ["unsubscribe", "preferences", "postmark", "mailgun", "sendgrid"]
)
def test_a_huge_body_is_a_413_before_it_is_read(paths, endpoint):
    path, content_type = paths[endpoint]
    body = RandomBody(200 * MB)
    with wsgi() as handler:
        call(handler, path, RandomBody(10), 10, content_type)  # lazy imports, templates
        suppressed = Suppression.objects.count()
        tracemalloc.start()
        try:
            status = call(handler, path, body, 200 * MB, content_type)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status == 413
    assert body.read_bytes == 0
    assert peak < 1 * MB, peak
    assert Suppression.objects.count() == suppressed  # the 413 unsubscribed nobody


@override_settings(ANYMAIL=ANYMAIL)
def test_many_large_random_bodies_leave_memory_where_it_was(paths, settings):
    """300 random bodies just under each endpoint's limit (64 KiB forms, 2.5 MB webhooks):
    each is refused with a 4xx (bar the one-click unsubscribe), and memory after them
    is what it was after the first rounds, give or take less than two bodies."""
    limits = {"unsubscribe": FORM_MAX_BYTES, "preferences": FORM_MAX_BYTES}
    rounds = 60
    tracemalloc.start()
    try:
        with wsgi() as handler:
            statuses, peaks = set(), []
            for round_ in range(rounds):
                for endpoint, (path, content_type) in paths.items():
                    size = limits.get(endpoint, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
                    tracemalloc.reset_peak()
                    statuses.add((endpoint, call(handler, path, RandomBody(size), size,
                                                 content_type)))  # fmt: skip
                    peaks.append(tracemalloc.get_traced_memory()[1])
                if round_ == 4:  # caches and lazy imports warmed up
                    gc.collect()  # refused requests leave cycles (exception ↔ traceback)
                    baseline = tracemalloc.get_traced_memory()[0]
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    # Random bytes: not JSON, not a form (the one-click POST still unsubscribes: 200; the
    # preferences form wants its CSRF token: 403).
    assert statuses == {("unsubscribe", 200), ("preferences", 403), ("postmark", 400),
                        ("mailgun", 400), ("sendgrid", 400)}  # fmt: skip
    # Keeping even one body in ten would grow it by tens of MB; measured: 38 KB.
    limit = 2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert grown < limit, f"memory grew by {grown} bytes over {rounds} rounds"
    # A request holds its body a few times over at most (read, decoded, parsed).
    assert max(peaks) < 4 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE, max(peaks)
