"""The senders read the environment once for their ESP sessions
(campaigns/email/senders.py: `read_environment_once`) and still do what requests
would have done on every call: go through HTTP(S)_PROXY (with the login its URL
carries), not for a NO_PROXY host, with REQUESTS_CA_BUNDLE — the sending threads and
the event loop (campaigns/email/http_sending.py) alike. Through the real Anymail
Postmark backend, a real forwarding proxy and the Postmark stand-in."""

from __future__ import annotations

import base64
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
from django.core.mail import get_connection
from requests.utils import get_environ_proxies

from campaigns.email import pacing, sending
from campaigns.email.senders import read_environment_once
from campaigns.models import Message
from tests.email.conftest import T0, make_campaign, queue_messages
from tests.email.postmark_standin import PostmarkStandIn, postmark_settings

pytestmark = pytest.mark.django_db

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                   "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # fmt: skip


class ForwardingProxy:
    """A plain HTTP forward proxy: takes absolute-form requests, passes them on, and
    remembers the URLs it forwarded."""

    def __init__(self):
        self.urls: list[str] = []
        self.logins: list[str | None] = []  # each request's Proxy-Authorization
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                target = urlsplit(self.path)  # absolute form: http://host:port/path
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items()
                           if not k.lower().startswith("proxy-") and k.lower() != "connection"}  # fmt: skip
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                upstream.request("POST", target.path, body, headers)
                answer = upstream.getresponse()
                payload = answer.read()
                upstream.close()
                proxy.urls.append(self.path)
                proxy.logins.append(self.headers.get("Proxy-Authorization"))
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _clean(redis_client, monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    pacing.reset()
    yield
    pacing.reset()


@pytest.fixture
def postmark(settings):
    server = PostmarkStandIn().start()
    for name, value in postmark_settings(server.url).items():
        setattr(settings, name, value)
    yield server
    server.stop()


def send_five():
    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 5)
    return sending.send_queued(clock=lambda: T0, concurrency=4)


@pytest.fixture(params=["auto", "threads"])
def transport(request, settings):
    """Each test twice: through the event loop ("auto", for Postmark) and the threads."""
    settings.EMAIL_SEND_TRANSPORT = request.param
    return request.param


def test_the_senders_go_through_the_environments_proxy(postmark, monkeypatch, transport):
    with ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)

        report = send_five()

    assert report.counts == {"sent": 5}
    assert proxy.urls == [postmark.url + "email"] * 5
    assert proxy.logins == [None] * 5
    assert sum(postmark.accepted.values()) == 5
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_the_proxy_login_in_its_url_goes_as_proxy_authorization(postmark, monkeypatch, transport):
    with ForwardingProxy() as proxy:
        login = proxy.url.replace("http://", "http://relay:s%40cret@")
        monkeypatch.setenv("HTTP_PROXY", login)

        report = send_five()

    assert report.counts == {"sent": 5}
    expected = "Basic " + base64.b64encode(b"relay:s@cret").decode()
    assert proxy.logins == [expected] * 5


def test_a_no_proxy_esp_host_is_reached_directly(postmark, monkeypatch, transport):
    with ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")

        report = send_five()

    assert report.counts == {"sent": 5}
    assert proxy.urls == []
    assert sum(postmark.accepted.values()) == 5


def test_the_session_keeps_what_requests_reads_from_the_environment(postmark, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/company-ca.pem")
    backend = get_connection()
    backend.open()
    expected = get_environ_proxies(backend.api_url)

    read_environment_once(backend)

    session = backend.session
    assert session.trust_env is False  # nothing is read per call any more
    assert session.proxies == expected == {"http": "http://proxy.internal:3128"}
    assert session.verify == "/etc/ssl/certs/company-ca.pem"
    # An explicit setting of the caller still wins over the environment's.
    prepared = session.merge_environment_settings(
        backend.api_url, {"http": "http://other:1"}, None, False, None
    )
    assert prepared["proxies"]["http"] == "http://other:1"
    assert prepared["verify"] is False
    backend.close()


def test_backends_without_a_requests_session_are_left_alone(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    backend = get_connection()

    read_environment_once(backend)  # no session, no api_url: nothing to do

    assert not hasattr(backend, "session")
    session = requests.Session()
    backend.session, backend.api_url = session, None
    read_environment_once(backend)
    assert session.trust_env is True
