"""The event loop that sends through Anymail's HTTP backends
(campaigns/email/http_sending.py) sends what the backend itself sends and reads the
answer, or the failure on the way, as the backend would.

Each test sends the same email once as a sending thread does (`backend.send_messages`
through requests) and once through the event loop (aiohttp), to real local servers:
the ESP stand-ins of tests/email/esp_standins.py, and sockets that refuse, hang or hang
up, so the two can be compared request for request and verdict for verdict.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
import threading
import time

import pytest
import requests
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailMessage
from django.core.mail import get_connection

from campaigns.email import delivery, http_sending, senders
from campaigns.email.senders import Job, SenderPool, make_pool, read_environment_once
from tests.email import esp_standins
from tests.email.postmark_standin import TOKEN as STANDIN_TOKEN
from tests.email.postmark_standin import PostmarkStandIn
from tests.tls import self_signed

POSTMARK = "anymail.backends.postmark.EmailBackend"
MAILGUN = "anymail.backends.mailgun.EmailBackend"
TOKEN = "server-token-1"
SKIPPED_HEADERS = {"host", "accept-encoding", "connection"}  # each client writes its own


class Recording:
    """A stand-in that also keeps each request as it came: path, headers, body."""

    def __init__(self, standin_class, *args):
        raw = self.raw = []

        class Recorder(standin_class):
            def handle(self, path, headers, body):
                raw.append((path, headers, body))
                return super().handle(path, headers, body)

        self.standin = Recorder(*args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.standin.close()


def email(**extra) -> AnymailMessage:
    message = AnymailMessage(
        subject="Your cart is waiting — 10 % off",
        body="Hello Ada,\nyour cart is waiting.",
        from_email="Shop <hello@shop.test>",
        to=["Ada Lovelace <ada@example.com>"],
        headers={"Message-ID": "<m-1@reengage.test>", "List-Unsubscribe": "<https://u.test/x>"},
        tags=["cart"],
        metadata={"message_id": "1"},
        **extra,
    )
    message.attach_alternative("<p>Hello Ada, <b>your cart</b> is waiting.</p>", "text/html")
    return message


def backend(path: str, **options):
    opened = get_connection(path, **options)
    opened.open()
    read_environment_once(opened)
    return opened


def by_thread(path: str, message, **options) -> senders.Result:
    """As one sending thread sends: the backend's own send_messages, through requests."""
    own = backend(path, **options)
    try:
        return senders.send(own, Job(1, 1, 1, message))
    finally:
        own.close()


def by_event_loop(path: str, message, **options) -> senders.Result:
    pool = http_sending.AsyncSenderPool(4, backend(path, **options))
    try:
        pool.submit(Job(1, 1, 1, message))
        results = []
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            results = pool.take(timeout=1)
        assert pool.busy == 0
        return results[0]
    finally:
        pool.close()


def comparable(request) -> tuple:
    path, headers, body = request
    boundary = re.search(r"boundary=([^;\s]+)", headers.get("content-type", ""))
    headers = {k: v for k, v in headers.items() if k not in SKIPPED_HEADERS}
    if boundary:  # multipart: each request has its own random boundary
        marker = boundary.group(1)
        body = body.replace(marker.encode(), b"BOUNDARY")
        headers["content-type"] = headers["content-type"].replace(marker, "BOUNDARY")
    return path, headers, body


def test_postmark_gets_the_same_request_from_the_event_loop_as_from_requests():
    with Recording(esp_standins.Postmark, TOKEN) as api:
        options = {"server_token": TOKEN, "api_url": api.standin.base + "/"}
        threaded = by_thread(POSTMARK, email(), **options)
        looped = by_event_loop(POSTMARK, email(), **options)

    assert api.standin.errors == []
    assert threaded.error is None and looped.error is None
    assert len(api.raw) == 2
    assert comparable(api.raw[1]) == comparable(api.raw[0])
    # Postmark's MessageID for each (the stand-in makes a fresh one per email).
    for result in (threaded, looped):
        assert re.fullmatch(r"[0-9a-f-]{36}", result.esp_id), result.esp_id
    assert looped.esp_id != threaded.esp_id


def test_mailgun_gets_the_same_multipart_request_with_an_attachment_and_basic_auth():
    with Recording(esp_standins.Mailgun, "key-1", "mg.shop.test") as api:
        options = {"api_key": "key-1", "sender_domain": "mg.shop.test",
                   "api_url": api.standin.base + "/v3/"}  # fmt: skip
        attachment = [("receipt.txt", "Ünïcode receipt\n", "text/plain")]
        threaded = by_thread(MAILGUN, email(attachments=attachment), **options)
        looped = by_event_loop(MAILGUN, email(attachments=attachment), **options)

    assert api.standin.errors == []
    assert threaded.error is None and looped.error is None
    first, second = (comparable(r) for r in api.raw)
    assert second[1]["content-type"].startswith("multipart/form-data")
    assert second[1]["authorization"] == first[1]["authorization"]
    assert second == first
    assert looped.esp_id.endswith("@mg.shop.test>")


def send_several(path: str, messages, *, event_loop: bool, **options) -> list[senders.Result]:
    """Several emails through one backend (threads) or one event loop: the second email
    on is prepared from the first's shape."""
    if not event_loop:
        own = backend(path, **options)
        try:
            return [senders.send(own, Job(n, 1, 1, m)) for n, m in enumerate(messages)]
        finally:
            own.close()
    pool = http_sending.AsyncSenderPool(4, backend(path, **options))
    try:
        results = []
        for n, message in enumerate(messages):  # one at a time: the stand-in's order is ours
            pool.submit(Job(n, 1, 1, message))
            deadline = time.monotonic() + 30
            while pool.busy and time.monotonic() < deadline:
                results += pool.take(timeout=1)
        return results
    finally:
        pool.close()


def in_order(request) -> tuple:
    """`comparable`, with the headers in the order they were written."""
    path, headers, body = comparable(request)
    return path, list(headers.items()), body


def people_emails(**extra) -> list[AnymailMessage]:
    messages = []
    for n, name in enumerate(["Ada Lovelace", "Grace Hopper", "Ærøskøbing Ølstue"]):
        message = email(**extra)
        message.to = [f"{name} <p{n}@example.com>"]
        message.body = f"Hello {name},\nyour cart is waiting." + " more" * n
        message.extra_headers["Message-ID"] = f"<m-{n}@reengage.test>"
        messages.append(message)
    return messages


@pytest.mark.parametrize("esp", ["postmark", "mailgun"])
def test_each_email_of_a_run_gets_the_request_requests_prepares_headers_in_order(esp):
    """The event loop prepares the second email on from the first's shape (URL, headers,
    login): each email's request is still byte for byte what requests writes."""
    attachment = [("receipt.txt", "Ünïcode receipt\n", "text/plain")]
    if esp == "postmark":
        standin, args, path, extra = esp_standins.Postmark, (TOKEN,), POSTMARK, {}
    else:
        standin, args, path = esp_standins.Mailgun, ("key-1", "mg.shop.test"), MAILGUN
        extra = {"attachments": attachment}
    with Recording(standin, *args) as api:
        base = api.standin.base
        if esp == "postmark":
            options = {"server_token": TOKEN, "api_url": base + "/"}
        else:
            options = {"api_key": "key-1", "sender_domain": "mg.shop.test",
                       "api_url": base + "/v3/"}  # fmt: skip
        threaded = send_several(path, people_emails(**extra), event_loop=False, **options)
        looped = send_several(path, people_emails(**extra), event_loop=True, **options)

    assert api.standin.errors == []
    assert [r.error for r in threaded + looped] == [None] * 6
    assert len(api.raw) == 6
    by_requests, by_loop = api.raw[:3], api.raw[3:]
    for ours, theirs in zip(by_loop, by_requests, strict=True):
        assert in_order(ours) == in_order(theirs)
    assert len({r[2] for r in by_loop}) == 3  # three different bodies, each its own length


class SignsTheBody(requests.auth.AuthBase):
    """A login that depends on the body (as OAuth's does): never prepared from a shape."""

    def __call__(self, request):
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        request.headers["X-Signature"] = hashlib.sha256(body).hexdigest()
        return request


def test_a_login_that_signs_the_body_is_prepared_in_full_for_each_email():
    session = requests.Session()
    session.trust_env = False
    preparer = http_sending.RequestPreparer(session)
    url = "https://api.esp.test/email"
    prepared = [
        preparer.prepare({"method": "POST", "url": url, "data": body, "auth": SignsTheBody()})
        for body in ("one", "two")
    ]
    assert [p.headers["X-Signature"] for p in prepared] == [
        hashlib.sha256(b).hexdigest() for b in (b"one", b"two")
    ]
    assert preparer.shapes == {}
    basic = [
        preparer.prepare({"method": "POST", "url": url, "data": body, "auth": ("api", "k")})
        for body in ("one", "two!")
    ]
    assert len(preparer.shapes) == 1
    full = session.prepare_request(
        requests.Request(method="POST", url=url, data="two!", auth=("api", "k"))
    )
    assert list(basic[1].headers.items()) == list(full.headers.items())
    assert basic[1].body == full.body and basic[1].url == full.url


class Socket:
    """A listening socket that does one unkind thing with each connection."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)  # the request (it is small): the ESP may have it now
            if self.behaviour == "hang up":
                conn.close()
            elif self.behaviour == "503":
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                             b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")  # fmt: skip
                conn.close()
            else:  # "never answer"
                self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: the connection is refused
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize(
    ("behaviour", "verdict"),
    [
        ("refused", delivery.RETRY),  # never connected: surely not sent
        ("503", delivery.RETRY),
        ("hang up", delivery.UNKNOWN),  # read the request, then closed: it may be sent
        ("never answer", delivery.UNKNOWN),  # a read timeout after the request went out
    ],
)
def test_a_failed_post_gets_the_same_verdict_from_the_event_loop_as_from_requests(
    behaviour, verdict
):
    server = None if behaviour == "refused" else Socket(behaviour)
    url = closed_port_url() if server is None else server.url
    options = {"server_token": TOKEN, "api_url": url, "timeout": 0.5}
    try:
        threaded = by_thread(POSTMARK, email(), **options)
        looped = by_event_loop(POSTMARK, email(), **options)
    finally:
        if server:
            server.close()

    for result in (threaded, looped):
        assert isinstance(result.error, AnymailAPIError), result.error
    assert delivery.classify(looped.error)[0] == delivery.classify(threaded.error)[0] == verdict
    assert looped.error.status_code == threaded.error.status_code
    assert type(looped.error.__cause__).__mro__[:2] == type(threaded.error.__cause__).__mro__[:2]


def test_anymails_http_backends_use_the_event_loop_and_the_others_threads(settings, monkeypatch):
    settings.EMAIL_BACKEND = POSTMARK
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": TOKEN}

    def kind(**options):
        pool = make_pool(4, **options)
        pool.close()
        return type(pool)

    assert kind() is http_sending.AsyncSenderPool
    assert kind(backend=get_connection("django.core.mail.backends.locmem.EmailBackend")) is (
        SenderPool
    )
    settings.EMAIL_SEND_TRANSPORT = "threads"
    assert kind() is SenderPool
    settings.EMAIL_SEND_TRANSPORT = "auto"
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")  # aiohttp has no SOCKS
    assert kind() is SenderPool
    monkeypatch.delenv("HTTPS_PROXY")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert kind() is SenderPool


@pytest.fixture
def tls_postmark(tmp_path, monkeypatch):
    """The Postmark stand-in over TLS, its certificate (for a CA bundle) and the
    backend options that point at it; no proxy or CA bundle from the environment."""
    cert, key = self_signed(tmp_path, "localhost")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = PostmarkStandIn()
    server.server.socket = tls.wrap_socket(server.server.socket, server_side=True)
    server.start()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY", "NO_PROXY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    options = {"server_token": STANDIN_TOKEN,
               "api_url": f"https://localhost:{server.server.server_address[1]}/"}  # fmt: skip
    yield server, cert, options
    server.stop()


def both_ways(options) -> list[senders.Result]:
    return [by_thread(POSTMARK, email(), **options), by_event_loop(POSTMARK, email(), **options)]


def test_tls_is_verified_with_the_environments_ca_bundle_both_ways(tls_postmark, monkeypatch):
    server, cert, options = tls_postmark
    # Not a certificate the default bundle trusts: no connection, safe to retry.
    refused = both_ways(options)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    trusted = both_ways(options)

    for result in refused:
        assert isinstance(result.error.__cause__, requests.exceptions.SSLError), result.error
        assert delivery.classify(result.error)[0] == delivery.RETRY
    assert [r.error for r in trusted] == [None, None]
    assert sum(server.accepted.values()) == 2


class TunnelProxy:
    """An HTTPS proxy: takes CONNECT host:port, answers 200, then passes bytes both
    ways; remembers each CONNECT's target and Proxy-Authorization."""

    def __init__(self):
        self.connects: list[tuple[str, str, str | None]] = []  # (method, target, login)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket):
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        login = {k.lower(): v for k, v in headers.items()}.get("proxy-authorization")
        self.connects.append((method, target, login))
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                sink.close()

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self):
        self.sock.close()


def test_https_goes_through_the_proxys_tunnel_with_its_login_both_ways(tls_postmark, monkeypatch):
    server, cert, options = tls_postmark
    proxy = TunnelProxy()
    monkeypatch.setenv("HTTPS_PROXY", f"http://relay:s%40cret@127.0.0.1:{proxy.port}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    try:
        results = both_ways(options)
    finally:
        proxy.close()

    assert [r.error for r in results] == [None, None]
    login = "Basic " + base64.b64encode(b"relay:s@cret").decode()
    target = f"localhost:{server.server.server_address[1]}"
    assert proxy.connects == [("CONNECT", target, login)] * 2
    assert sum(server.accepted.values()) == 2


def test_an_event_loop_that_cannot_start_reports_each_email_as_not_sent(monkeypatch):
    async def broken(self):
        raise RuntimeError("no event loop for you")

    monkeypatch.setattr(http_sending.AsyncSenderPool, "_open", broken)
    result = by_event_loop(POSTMARK, email(), server_token=TOKEN, api_url=closed_port_url())

    assert "did not start" in str(result.error.__cause__)
    assert delivery.classify(result.error)[0] == delivery.RETRY  # nothing went out
    assert not [t for t in threading.enumerate() if t.name == "email-http"]  # none left


@pytest.mark.django_db
def test_an_unreadable_ca_bundle_fails_the_run_before_anything_is_claimed(settings, monkeypatch):
    from campaigns.email import sending
    from campaigns.models import Message
    from tests.email.conftest import T0, make_campaign, queue_messages

    settings.EMAIL_BACKEND = POSTMARK
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": TOKEN, "POSTMARK_API_URL": closed_port_url()}
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/company-ca.pem")
    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 3)

    with pytest.raises(OSError, match=r"company-ca\.pem|No such file"):
        sending.send_queued(clock=lambda: T0)

    assert set(Message.objects.values_list("status", flat=True)) == {"queued"}
