"""Many emails in flight from one thread of HTTP: how a worker sends through Anymail's
HTTP backends (Postmark, Mailgun, SendGrid, Brevo, Postal… — every
`AnymailRequestsBackend`).

Why not the sending threads (campaigns/email/senders.py) for these: with a 50 ms ESP
one process sent ~220 emails/s through 64 threads, and the threads themselves were the
largest cost — `requests` spends ~1 ms of CPU per call and 64 threads fighting over the
interpreter lock added ~1.4 ms per email more (docs/benchmarks.md). Here one thread
runs an asyncio event loop with an aiohttp client that keeps up to
`EMAIL_SEND_CONCURRENCY` requests open at once on kept-alive connections; it only
writes request bytes and reads answers.

Everything else Anymail does stays Anymail's, on the sending loop's thread, in the
order of `AnymailBaseBackend._send`: the pre_send signal, `build_message_payload`,
`get_request_params`, the request as `requests` prepares it (the session's headers and
auth, `files` as multipart, `params` in the URL, the environment's proxy for the API's
host and its CA bundle), then on the answer `raise_for_status`,
`parse_recipient_status`, the post_send signal and `raise_for_recipient_status`, on a
real `requests.Response`. So an ESP's request is the one its backend sends (only
Accept-Encoding names what aiohttp decodes), and its errors are the ones it raises. A network error becomes the `requests`
exception that would have said the same thing (connection refused, connect timeout,
read timeout, connection lost once connected) inside the same
`AnymailRequestsAPIError`, so `classify` decides retry or "outcome unknown" exactly as
for the threads.

The other backends — SMTP, Amazon SES (boto3), the development mailbox, the test
backends — and a setting of `EMAIL_SEND_TRANSPORT=threads` use the threads.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import requests
import urllib3
from anymail.backends.base_requests import AnymailRequestsBackend
from anymail.exceptions import AnymailRequestsAPIError
from anymail.message import AnymailStatus
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy
from yarl import URL  # aiohttp's own URL type

from campaigns.email.senders import Job, Result, drain, result_of

log = logging.getLogger(__name__)

PROXY_SCHEMES = {"http", "https"}  # what aiohttp can tunnel through; SOCKS uses threads


def supports(backend) -> bool:
    """Can this (opened) backend send through the event loop? Anymail's HTTP backends
    that post the way Anymail's base class does, with no debug dump of each request and
    a proxy, if the environment names one for the API, that aiohttp speaks."""
    if not isinstance(backend, AnymailRequestsBackend):
        return False
    kind = type(backend)
    if (
        kind.post_to_esp is not AnymailRequestsBackend.post_to_esp
        or kind._send is not AnymailRequestsBackend._send
        or backend.debug_api_requests
    ):
        return False
    session = backend.session
    if not isinstance(session, requests.Session) or session.cert:
        return False
    proxy = select_proxy(backend.api_url, session.proxies)
    return proxy is None or urlsplit(proxy).scheme in PROXY_SCHEMES


@dataclass
class Outgoing:
    """What the loop's thread hands to the event loop for one email."""

    job: Job
    payload: object
    request: requests.PreparedRequest
    headers: dict[str, str]
    body: bytes | None
    timeout: aiohttp.ClientTimeout
    started: float = 0.0


@dataclass
class Answer:
    """What the event loop hands back: the ESP's answer, or the error on the way."""

    outgoing: Outgoing
    status: int = 0
    reason: str = ""
    headers: CaseInsensitiveDict | None = None
    body: bytes = b""
    url: str = ""
    error: BaseException | None = None


class AsyncSenderPool:
    """The sending threads' interface (`submit`, `take`, `busy`, `close`) over one event
    loop thread. `backend` is an opened backend that `supports`; the pool closes it."""

    def __init__(self, size: int, backend: AnymailRequestsBackend):
        self.size = size
        self.backend = backend
        self.busy = 0  # jobs submitted and not yet reported
        self.results: queue.SimpleQueue[Answer | Result] = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None  # started by the first submit
        self.thread: threading.Thread | None = None
        self.http: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task] = set()
        # Made here: a CA bundle that cannot be read fails the run before any claim.
        self.tls = ssl_context(backend.session.verify)
        # Every request goes to the API's one host (as `read_environment_once` reads
        # it): its proxy, and the proxy's login on the CONNECT that opens the tunnel for
        # HTTPS or on each request the proxy forwards for HTTP.
        self.proxy, login = proxy_for(backend.api_url, backend.session.proxies)
        tunnel = backend.api_url.startswith("https:")
        self.proxy_headers = login if tunnel else None
        self.forwarded_login = None if tunnel else login
        self.prepare = RequestPreparer(backend.session).prepare

    # -- on the sending loop's thread -------------------------------------------------

    def submit(self, job: Job) -> None:
        self.busy += 1
        try:
            outgoing = self.outgoing(job)
        except BaseException as exc:  # built as Anymail would have: its error, reported
            self.results.put(Result(job, error=exc))
            return
        if outgoing is None:  # a pre_send receiver cancelled it, or no recipients
            self.results.put(result_of(job))
            return
        if self.loop is None:
            try:
                self.start()
            except Exception as exc:  # nothing went out: as a connection never made
                self.results.put(Result(job, error=not_sent(exc, outgoing)))
                return
        self.loop.call_soon_threadsafe(self._begin, outgoing)

    def outgoing(self, job: Job) -> Outgoing | None:
        """The first half of `AnymailBaseBackend._send` and of `post_to_esp`: the
        request for one email, prepared by the backend's own `requests` session."""
        backend, email = self.backend, job.email
        email.anymail_status = AnymailStatus()
        if not backend.run_pre_send(email) or not email.recipients():
            return None
        payload = backend.build_message_payload(email, backend.send_defaults)
        params = payload.get_request_params(backend.api_url)
        timeout = params.pop("timeout", backend.timeout)
        request = self.prepare(params)
        body = request.body
        if isinstance(body, str):  # as http.client writes a str body (requests leaves it)
            body = body.encode("iso-8859-1")
        elif body is not None and not isinstance(body, bytes):
            body = b"".join(body)  # a streamed body (never from Anymail's payloads)
        headers = headers_of(request)
        if self.forwarded_login:
            headers.update(self.forwarded_login)
        return Outgoing(job, payload, request, headers, body, client_timeout(timeout))

    def take(self, timeout: float | None) -> list[Result]:
        """Results reported so far; waits up to `timeout` for the first when there is none."""
        answers = drain(self.results, timeout)
        self.busy -= len(answers)
        return [item if isinstance(item, Result) else self.finish(item) for item in answers]

    def finish(self, answer: Answer) -> Result:
        """The second half of `post_to_esp` and of `_send`, on the ESP's answer."""
        backend, outgoing = self.backend, answer.outgoing
        job, payload, email = outgoing.job, outgoing.payload, outgoing.job.email
        try:
            if answer.error is not None:
                raise posting_error(as_requests_error(answer.error, outgoing.request), outgoing)
            response = as_response(answer)
            backend.raise_for_status(response, payload, email)
            email.anymail_status.esp_response = response
            recipient_status = backend.parse_recipient_status(response, payload, email)
            email.anymail_status.set_recipient_status(recipient_status)
            backend.run_post_send(email)
            backend.raise_for_recipient_status(email.anymail_status, response, payload, email)
        except BaseException as exc:  # classified by the loop, never lost
            return Result(job, error=exc)
        return result_of(job)

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="email-http", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(30)
        except BaseException:  # no loop left running for a client that never opened
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()
            raise
        self.loop, self.thread = loop, thread

    def close(self, timeout: float = 60) -> None:
        try:
            if self.loop is not None:
                try:
                    future = asyncio.run_coroutine_threadsafe(self._close(), self.loop)
                    future.result(timeout)
                except Exception:
                    log.warning("closing the email HTTP client failed", exc_info=True)
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout)
                if not self.thread.is_alive():
                    self.loop.close()
                self.loop = self.thread = None
        finally:
            try:
                self.backend.close()
            except Exception:
                log.warning("closing an email backend failed", exc_info=True)

    # -- on the event loop's thread ---------------------------------------------------

    async def _open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.size, ssl=self.tls)
        # The request's own headers are those requests sends: add none of aiohttp's but
        # Accept-Encoding (see `headers_of`).
        self.http = aiohttp.ClientSession(
            connector=connector,
            skip_auto_headers=("User-Agent", "Accept", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def _begin(self, outgoing: Outgoing) -> None:
        task = self.loop.create_task(self._post(outgoing))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, outgoing: Outgoing) -> None:
        request = outgoing.request
        outgoing.started = time.monotonic()
        try:
            async with self.http.request(
                request.method,
                aiohttp_url(request.url),
                data=outgoing.body,
                headers=outgoing.headers,
                proxy=self.proxy,
                proxy_headers=self.proxy_headers,
                timeout=outgoing.timeout,
            ) as answer:
                body = await answer.read()
                self.results.put(
                    Answer(
                        outgoing,
                        status=answer.status,
                        reason=answer.reason or "",
                        headers=CaseInsensitiveDict(answer.headers),
                        body=body,
                        url=str(answer.url),
                    )
                )
        except BaseException as exc:
            self.results.put(Answer(outgoing, error=exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.close()
            self.http = None


# --- between requests and aiohttp ---------------------------------------------------------

BODY_PARAMS = ("data", "files", "json")
SHAPE_PARAMS = ("method", "url", "headers", "params", "auth")


class RequestPreparer:
    """`session.prepare_request(requests.Request(**params))`, the same request, at a
    fraction of the cost for the second email on: every email of a backend goes to the
    same URL with the same headers and login and only the body changes, so the rest —
    the session's merged headers, the parsed URL and its query, the login — is
    prepared once per shape and copied (requests' own `PreparedRequest.copy`); the body
    of each email is prepared by requests (`prepare_body`), and the login header goes
    after it, where `prepare` puts it. What this cannot vouch for — cookies, hooks, a
    login other than HTTP basic or none, an explicit Authorization header beside a
    login, a streamed body — is prepared in full, as before.

    The session is read once, here: the event loop never sends through it, so its
    cookies, hooks, headers and login stay as they are for the run."""

    MAX_SHAPES = 8

    def __init__(self, session: requests.Session):
        self.session = session
        # A shape's template and the login header names to put after the body; None for
        # a shape that must be prepared in full.
        self.shapes: dict[tuple, tuple[requests.PreparedRequest, tuple[str, ...]] | None] = {}
        try:
            frozen(session.auth)
        except NotBasic:
            reusable = False
        else:
            reusable = not session.cookies and session.hooks == requests.hooks.default_hooks()
        self.reusable = reusable

    def prepare(self, params: dict) -> requests.PreparedRequest:
        key = self.shape_of(params)
        if key is not None and key not in self.shapes:
            if len(self.shapes) >= self.MAX_SHAPES:
                self.shapes.clear()
            self.shapes[key] = self.new_shape(params)
        shape = self.shapes.get(key) if key is not None else None
        if shape is None:
            return self.session.prepare_request(requests.Request(**params))
        template, login_names = shape
        request = template.copy()
        login = {name: request.headers.pop(name) for name in login_names if name in request.headers}
        request.prepare_body(params.get("data"), params.get("files"), params.get("json"))
        request.headers.update(login)
        return request

    def shape_of(self, params: dict) -> tuple | None:
        """What the request's preparation depends on besides its body, hashable; None when
        this email must be prepared in full."""
        if not self.reusable or set(params) - set(BODY_PARAMS) - set(SHAPE_PARAMS):
            return None  # cookies, hooks, proxies or the like of its own
        data = params.get("data")
        if data is not None and not isinstance(data, str | bytes | dict | list | tuple):
            return None  # a stream or a file: its length and encoding are requests' call
        try:
            key = tuple(frozen(params.get(name)) for name in SHAPE_PARAMS)
            hash(key)
        except (TypeError, NotBasic):
            return None
        return key

    def new_shape(self, params: dict) -> tuple[requests.PreparedRequest, tuple[str, ...]] | None:
        """The template of this email's shape, or None when the login would overwrite an
        explicit Authorization header where it stands (prepared in full, every email)."""
        auth = params.get("auth") or self.session.auth
        logs_in = bool(auth) or any(requests.utils.get_auth_from_url(params.get("url") or ""))
        explicit = CaseInsensitiveDict(self.session.headers)
        explicit.update(params.get("headers") or {})
        if logs_in and "Authorization" in explicit:
            return None
        bodiless = {k: v for k, v in params.items() if k not in BODY_PARAMS}
        template = self.session.prepare_request(requests.Request(**bodiless))
        return template, ("Authorization",) if logs_in else ()


class NotBasic(Exception):
    """A login other than HTTP basic: it may depend on the body (OAuth signs it)."""


def frozen(value):
    """`value` as a hashable key part (dicts and lists as tuples, a basic login as its
    user and password)."""
    if isinstance(value, dict | CaseInsensitiveDict):
        return tuple((k, frozen(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    if type(value) is requests.auth.HTTPBasicAuth:
        return ("basic", value.username, value.password)
    if callable(value):
        raise NotBasic(value)
    return value


def headers_of(request: requests.PreparedRequest) -> dict[str, str]:
    """The prepared request's headers but Accept-Encoding, which aiohttp writes itself:
    the encodings it can decode (requests' names those urllib3 can, which may differ)."""
    return {k: v for k, v in request.headers.items() if k.lower() != "accept-encoding"}


def aiohttp_url(url: str) -> URL:
    """The URL exactly as requests prepared (and percent-encoded) it."""
    return URL(url, encoded=True)


def client_timeout(timeout) -> aiohttp.ClientTimeout:
    """requests' `timeout` (seconds, or (connect, read), None for none) as aiohttp's:
    connect bounds making the connection, read each wait for the answer's bytes."""
    if isinstance(timeout, tuple):
        connect, read = timeout
    else:
        connect = read = timeout
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


def ssl_context(verify) -> ssl.SSLContext | bool:
    """requests' `verify`: True (certifi's bundle, as requests uses), a CA bundle file or
    directory (REQUESTS_CA_BUNDLE), or False."""
    if verify is False:
        return False
    if verify is True:
        verify = requests.utils.DEFAULT_CA_BUNDLE_PATH
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def proxy_for(url: str, proxies: dict) -> tuple[str | None, dict[str, str] | None]:
    """The proxy requests would use for `url`, and its login as the Proxy-Authorization
    header requests sends (on the forwarded request, or on the CONNECT for HTTPS)."""
    proxy = select_proxy(url, proxies)
    if not proxy:
        return None, None
    if "://" not in proxy:
        proxy = "http://" + proxy  # as requests reads a bare host:port
    parts = urlsplit(proxy)
    if not parts.username:
        return proxy, None
    user, password = requests.utils.get_auth_from_url(proxy)
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    token = base64.b64encode(f"{user}:{password}".encode("latin-1")).decode()
    return bare, {"Proxy-Authorization": f"Basic {token}"}


def posting_error(cause: requests.RequestException, outgoing: Outgoing) -> AnymailRequestsAPIError:
    """The error `post_to_esp` raises for `cause`: both AnymailRequestsAPIError and the
    requests exception's type, caused by it."""
    kind = type("AnymailRequestsAPIError", (AnymailRequestsAPIError, type(cause)), {})
    error = kind(
        f"Error posting to {outgoing.request.url}:",
        email_message=outgoing.job.email,
        payload=outgoing.payload,
    )
    error.__cause__ = cause
    return error


def not_sent(exc: Exception, outgoing: Outgoing) -> AnymailRequestsAPIError:
    """The event loop could not start: the email never left, so it may be tried again."""
    cause = requests.ConnectionError(f"the HTTP client did not start: {exc!r}")
    cause.__cause__ = exc
    return posting_error(cause, outgoing)


def as_response(answer: Answer) -> requests.Response:
    """The ESP's answer as the `requests.Response` Anymail's backends read."""
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason
    response.headers = answer.headers if answer.headers is not None else CaseInsensitiveDict()
    response._content = answer.body
    response.encoding = get_encoding_from_headers(response.headers)
    response.url = answer.url or answer.outgoing.request.url
    response.request = answer.outgoing.request
    response.elapsed = timedelta(seconds=time.monotonic() - answer.outgoing.started)
    return response


def as_requests_error(exc: BaseException, request) -> requests.RequestException:
    """The requests exception that says what `exc` says about whether the ESP may have
    the email: a connection never made (safe to retry) or lost once made (unknown)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error: requests.RequestException = requests.ConnectTimeout(str(exc), request=request)
    elif isinstance(exc, aiohttp.ClientSSLError):  # the certificate or handshake failed
        error = requests.exceptions.SSLError(str(exc), request=request)
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = requests.ConnectionError(str(exc), request=request)
    elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
        error = requests.ReadTimeout(str(exc) or "the ESP did not answer in time", request=request)
    elif isinstance(exc, aiohttp.ClientError | OSError):
        lost = urllib3.exceptions.ProtocolError("Connection aborted.", exc)
        error = requests.ConnectionError(lost, request=request)
    else:  # cancelled at shut-down, or anything else: it may have gone out
        lost = urllib3.exceptions.ProtocolError(f"{type(exc).__name__}: {exc}", exc)
        error = requests.ConnectionError(lost, request=request)
    error.__cause__ = exc
    return error
