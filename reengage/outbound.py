"""The one HTTP client for requests that leave reengage (webhooks now, ad platforms next).

A marketer (or whoever holds an admin session) types the URL, so the URL is
untrusted: without a guard, "Send test" and the worker would POST to the cloud
metadata service, to Redis or PostgreSQL on 127.0.0.1, or to the app's own admin,
and the answer would tell open ports from closed ones. This module:

- accepts https only (http only with OUTBOUND_ALLOW_HTTP, which defaults to DEBUG,
  for the local stand-ins of development);
- resolves the host name once, refuses the request if *any* address it resolves
  to is loopback, private, link-local, CGNAT, multicast, reserved, unspecified or
  a metadata address, then connects to the address it checked, sending the name
  in the Host header and TLS SNI and verifying the certificate against the name:
  a DNS answer that changes between the check and the connection (rebinding) is
  never used, because the connection makes no second lookup;
- follows no redirects (a 3xx is a failed attempt, like any non-2xx);
- bounds the connection and the whole reply in time (timeout) and size
  (OUTBOUND_MAX_RESPONSE_BYTES), and never returns the reply's body: callers get
  the status code and a short reason, which is what an admin may see.

OUTBOUND_ALLOW_LOOPBACK lets requests reach 127.0.0.0/8 and ::1 (never the
metadata addresses, never private networks): it is for tests and development
stand-ins only, and is off unless set explicitly.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

USER_AGENT = "reengage/1"

# Cloud metadata services, by address and by name (AWS IPv4/IPv6, GCP, Azure, Alibaba,
# Oracle, DigitalOcean all answer on one of these).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
     "instance-data.ec2.internal", "metadata.azure.com"}
)  # fmt: skip
CGNAT = ipaddress.ip_network("100.64.0.0/10")


class OutboundRefused(Exception):
    """The URL or the address it resolves to may not be contacted; the message says why."""


@dataclass(frozen=True)
class Reply:
    ok: bool
    status_code: int | None
    error: str  # short, never the body of the reply


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address may not be contacted, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if settings.OUTBOUND_ALLOW_LOOPBACK else "a loopback address"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "a shared (CGNAT) address"
    for flag, words in (
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    ):
        if getattr(address, flag):
            return words
    if not address.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def parse(url: str) -> Target:
    """Check the URL's form (scheme, host, port) without touching the network."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "http":
        if not settings.OUTBOUND_ALLOW_HTTP:
            raise OutboundRefused("http:// is not allowed; use https://")
    elif scheme != "https":
        raise OutboundRefused(
            f"{scheme or 'a URL without a scheme'}:// is not allowed; use https://"
        )
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise OutboundRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("credentials in the URL are not allowed")
    if host in METADATA_HOSTS or host.endswith(".internal"):
        raise OutboundRefused(f"{host} is a cloud metadata host")
    if "\x00" in url or any(c in url for c in "\r\n"):
        raise OutboundRefused("the URL contains control characters")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def resolve(target: Target) -> str:
    """The one address the request will connect to, after checking every address the
    name resolves to (one bad answer refuses the request: an attacker's DNS would
    otherwise rotate a private address into the answers)."""
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise OutboundRefused(f"{target.host} does not resolve ({exc})") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise OutboundRefused(f"{target.host} does not resolve")
    for address in addresses:
        reason = _refusal(address)
        if reason:
            raise OutboundRefused(f"{target.host} is {reason} ({address})")
    return str(addresses[0])


def check_url(url: str, *, resolve_name: bool = True) -> None:
    """Raise OutboundRefused when the URL may not be contacted (for form validation).
    A name that does not resolve (yet) passes when `resolve_name` is False."""
    target = parse(url)
    if resolve_name:
        resolve(target)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address; Host header from the name."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = _connect(self._address, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the checked address; SNI, certificate check and Host from the name."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = _connect(self._address, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    """Connect to the checked address literal itself: no name, so no second lookup
    (socket.create_connection would call getaddrinfo again)."""
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    _check_peer(sock, address)
    return sock


def _check_peer(sock: socket.socket, address: str) -> None:
    """At connect time: the socket is connected to the address that was checked."""
    peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
    if peer != ipaddress.ip_address(address) or _refusal(peer):
        sock.close()
        raise OutboundRefused(f"connected to {peer}, not the checked address")


@dataclass(frozen=True)
class Response:
    """What `request` got: the status (None when no answer came, `error` says why),
    the headers (lower-cased names) and at most OUTBOUND_MAX_RESPONSE_BYTES of body."""

    status_code: int | None
    headers: dict[str, str]
    body: bytes
    error: str


def request(
    method: str, url: str, *, body: bytes | None, headers: dict[str, str], timeout: float
) -> Response:
    """One guarded request that returns the (bounded) reply, for callers whose hosts come
    from settings, not from a marketer (the ad platforms' APIs): their error bodies are
    the API's own messages. Never raises for network trouble or a refusal."""
    try:
        target = parse(url)
        address = resolve(target)
    except OutboundRefused as exc:
        return Response(None, {}, b"", f"refused: {exc}"[:300])
    deadline = time.monotonic() + timeout
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = cls(target.host, target.port, address, timeout)
    try:
        connection.request(
            method, target.path, body=body, headers={"User-Agent": USER_AGENT, **headers}
        )
        response = connection.getresponse()
        content = _drain(response, connection.sock, deadline)
        return Response(
            response.status, {k.lower(): v for k, v in response.getheaders()}, content, ""
        )
    except OutboundRefused as exc:
        error = f"refused: {exc}"
    except TimeoutError:
        error = "timed out"
    except ssl.SSLError as exc:
        error = f"TLS error ({exc.reason or type(exc).__name__})"
    except http.client.HTTPException:
        error = "not an HTTP reply"
    except ConnectionRefusedError:
        error = "connection refused"
    except OSError as exc:
        error = f"network error ({exc.strerror or type(exc).__name__})"
    finally:
        connection.close()
    return Response(None, {}, b"", error[:300])


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
    """POST `body` to a URL a marketer typed (webhooks): never raises for network
    trouble, never returns the reply's body (it would tell an admin what an internal
    service answered)."""
    response = request("POST", url, body=body, headers=headers, timeout=timeout)
    status = response.status_code
    if status is None:
        return Reply(False, None, response.error)
    if 200 <= status < 300:
        return Reply(True, status, "")
    if 300 <= status < 400:
        return Reply(False, status, f"HTTP {status} (redirects are not followed)")
    return Reply(False, status, f"HTTP {status}")


def _drain(
    response: http.client.HTTPResponse, sock: socket.socket | None, deadline: float
) -> bytes:
    """Read at most OUTBOUND_MAX_RESPONSE_BYTES of the reply before the deadline: a
    receiver that trickles or streams forever cannot hold a worker."""
    remaining = settings.OUTBOUND_MAX_RESPONSE_BYTES
    chunks: list[bytes] = []
    while remaining > 0:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if sock is not None:
            sock.settimeout(left)
        chunk = response.read1(min(remaining, 16384))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
