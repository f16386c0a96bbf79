"""The guarded outbound client: only public https addresses, pinned, no redirects, bounded."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings

from reengage import outbound


class Listener:
    """A raw TCP listener on 127.0.0.1 that counts every connection it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


class HTTPReceiver:
    """A real HTTP server on 127.0.0.1 answering each POST with `status` (and headers)."""

    def __init__(self, status=204, headers=None, body=b"", trickle: float = 0.0):
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(dict(self.headers.items()))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)) if not trickle else "100000")
                self.end_headers()
                if trickle:
                    try:
                        for _ in range(100):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(trickle)
                    except OSError:
                        pass
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    made = Listener()
    yield made
    made.close()


@pytest.fixture
def no_loopback(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = False
    settings.OUTBOUND_ALLOW_HTTP = True


def send(url: str, timeout: float = 2) -> outbound.Reply:
    return outbound.post(url, b"{}", {"Content-Type": "application/json"}, timeout)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata host"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://10.0.0.5/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://100.64.0.1/hook", "CGNAT"),
        ("http://169.254.10.10/hook", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fc00::1]/hook", "private"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://240.0.0.1/hook", "reserved"),
        ("ftp://example.com/hook", "ftp://"),
        ("file:///etc/passwd", "file://"),
        ("gopher://example.com/", "gopher://"),
        ("http://user:pw@example.com/", "credentials"),
    ],
)
def test_it_refuses_non_public_and_non_http_targets(no_loopback, url, reason):
    reply = send(url)
    assert not reply.ok
    assert reply.status_code is None
    assert reply.error.startswith("refused:")
    assert reason in reply.error


def test_it_refuses_loopback_without_reaching_the_listener(no_loopback, listener):
    for url in (
        f"http://127.0.0.1:{listener.port}/",
        f"http://127.1.2.3:{listener.port}/",
        f"http://localhost:{listener.port}/",  # a name that resolves to loopback
        f"http://[::1]:{listener.port}/",
        f"http://[::ffff:127.0.0.1]:{listener.port}/",
        f"https://127.0.0.1:{listener.port}/",
    ):
        reply = send(url)
        assert not reply.ok and "loopback" in reply.error, (url, reply)
    time.sleep(0.3)
    assert listener.connections == 0


def test_it_refuses_the_redis_port_on_loopback(no_loopback):
    port = urlsplit(django_settings.REDIS_URL).port or 6379
    reply = send(f"http://127.0.0.1:{port}/")
    assert reply == outbound.Reply(False, None, reply.error)
    assert "loopback" in reply.error


def test_plain_http_is_refused_unless_allowed(settings, listener):
    settings.OUTBOUND_ALLOW_HTTP = False
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    reply = send(f"http://127.0.0.1:{listener.port}/")
    assert not reply.ok and "http:// is not allowed" in reply.error
    time.sleep(0.3)
    assert listener.connections == 0


def test_a_name_with_one_private_answer_among_public_ones_is_refused(no_loopback, monkeypatch):
    # The DNS answer is the outside boundary; a resolver that mixes a private address
    # into a public answer stands in for an attacker's name server.
    def answers(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", answers)
    reply = send("https://rebind.example/hook")
    assert not reply.ok and "private" in reply.error


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(
    no_loopback, monkeypatch, listener
):
    """DNS rebinding: the first answer is public, every later one is 127.0.0.1. The
    client resolves once and connects to the address it checked, so the listener on
    127.0.0.1 sees nothing."""
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        lookups.append(host)
        address = "192.88.99.1" if len(lookups) == 1 else "127.0.0.1"  # public, then loopback
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, listener.port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    reply = outbound.post(f"http://rebind.example:{listener.port}/", b"{}", {}, 0.5)
    assert not reply.ok
    assert lookups == ["rebind.example"]
    time.sleep(0.3)
    assert listener.connections == 0


def test_redirects_are_not_followed(settings, listener):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    redirecting = HTTPReceiver(302, {"Location": f"http://127.0.0.1:{listener.port}/admin/"})
    try:
        reply = send(redirecting.url)
    finally:
        redirecting.close()
    assert reply == outbound.Reply(False, 302, "HTTP 302 (redirects are not followed)")
    assert len(redirecting.requests) == 1
    time.sleep(0.3)
    assert listener.connections == 0


def test_the_reply_body_is_never_returned(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    chatty = HTTPReceiver(500, body=b"-ERR secret internal banner")
    try:
        reply = send(chatty.url)
    finally:
        chatty.close()
    assert reply == outbound.Reply(False, 500, "HTTP 500")


def test_a_non_http_service_gets_a_short_reason(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def banner():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"-ERR unknown command 'POST', with args beginning with: \r\n")
        conn.close()

    threading.Thread(target=banner, daemon=True).start()
    try:
        reply = send(f"http://127.0.0.1:{server.getsockname()[1]}/")
    finally:
        server.close()
    assert reply == outbound.Reply(False, None, "not an HTTP reply")


def test_a_trickling_reply_is_cut_at_the_deadline(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    slow = HTTPReceiver(200, trickle=0.05)  # 100 bytes over 5 s
    started = time.monotonic()
    try:
        reply = outbound.post(slow.url, b"{}", {}, 1)
    finally:
        slow.close()
    elapsed = time.monotonic() - started
    assert reply == outbound.Reply(False, None, "timed out")
    assert elapsed < 2.5


def test_a_huge_reply_is_read_only_up_to_the_limit(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    settings.OUTBOUND_MAX_RESPONSE_BYTES = 1024
    big = HTTPReceiver(200, body=b"x" * 5_000_000)
    started = time.monotonic()
    try:
        reply = send(big.url)
    finally:
        big.close()
    assert reply == outbound.Reply(True, 200, "")
    assert time.monotonic() - started < 2


def test_an_honest_public_style_receiver_on_loopback_gets_the_request_when_allowed(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    receiver = HTTPReceiver(204)
    try:
        reply = outbound.post(receiver.url, b'{"a":1}', {"X-Test": "1"}, 2)
    finally:
        receiver.close()
    assert reply == outbound.Reply(True, 204, "")
    assert receiver.requests[0]["Host"] == f"127.0.0.1:{receiver.port}"
    assert receiver.requests[0]["X-Test"] == "1"


def test_metadata_stays_refused_even_with_loopback_allowed(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK = True
    assert "metadata" in send("http://169.254.169.254/").error
    assert "private" in send("http://10.0.0.1/").error


def test_https_connects_to_the_checked_address_with_the_name_as_sni(settings, tmp_path):
    """https://localhost:<port>/ resolves to 127.0.0.1 (allowed here), connects there,
    and offers "localhost" in SNI and checks the certificate against it: a self-signed
    certificate is refused."""
    import ssl

    from tests.tls import self_signed

    settings.OUTBOUND_ALLOW_LOOPBACK = True
    cert, key = self_signed(tmp_path, "localhost")
    seen: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen.append(name)
    family, *_, address = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]
    server = socket.socket(family)
    server.bind((address[0], 0))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        reply = send(f"https://localhost:{server.getsockname()[1]}/hook")
    finally:
        server.close()
    assert not reply.ok and reply.error.startswith("TLS error")
    assert seen == ["localhost"]
