"""The threads that hand emails to the backend, many at once — for the backends that
block: SMTP, Amazon SES (boto3), the development mailbox, the test backends, and every
backend when EMAIL_SEND_TRANSPORT is "threads". Anymail's HTTP backends send from one
event loop instead (campaigns/email/http_sending.py: why); `make_pool` picks.

Why threads for these: their clients block, and a send is ~all waiting on the ESP's
answer while the interpreter lock is free, so a pool of threads keeps many sends in
flight with the real backends, unchanged; a gevent or eventlet Celery pool would
monkeypatch the whole worker (PostgreSQL driver included). The CPU work — claiming,
loading, the suppression re-check, rendering, finishing — stays on the sending loop's
own thread (campaigns/email/sending.py), where it runs in batches; a thread here only
calls `backend.send_messages([email])` and reports.

Each thread opens its own backend (its own `requests.Session` or SMTP connection, kept
open for the thread's life so connections are reused) unless the caller hands one
shared backend in (the test backends, which keep no connection). A backend that writes
to the database (the development mailbox) uses the sending loop's own Django
connection, shared: its writes then see what the loop sees — inside a test's
transaction too — and are serialized with the loop's queries (psycopg2 connections are
thread-safe), which is fine for a development backend; the ESP backends never touch
the database.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from django.core.mail import get_connection
from django.db import connections
from requests.utils import get_netrc_auth

log = logging.getLogger(__name__)


@dataclass
class Job:
    message_id: int
    site_id: int
    attempts: int
    email: Any  # an AnymailMessage, sent by one thread


@dataclass
class Result:
    job: Job
    esp_id: str | None = None
    error: BaseException | None = None


class SenderPool:
    """Up to `size` threads, started as work needs them, each sending one email at a time."""

    def __init__(
        self,
        size: int,
        backend=None,
        factory: Callable[[], Any] = get_connection,
        db=None,
        spare=None,
    ):
        self.size = size
        self.db = db  # the loop's database connection, lent to the threads
        self.shared_backend = backend
        self.factory = factory
        # The first thread's backend, made here (or by the caller): a misconfigured
        # backend fails the run before anything is claimed, not in a thread.
        self.spare = spare or (factory() if backend is None else None)
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.busy = 0  # jobs submitted and not yet reported

    def submit(self, job: Job) -> None:
        self.busy += 1
        if len(self.threads) < min(self.busy, self.size):
            thread = threading.Thread(
                target=self._run, name=f"email-sender-{len(self.threads)}", daemon=True
            )
            self.threads.append(thread)
            thread.start()
        self.jobs.put(job)

    def take(self, timeout: float | None) -> list[Result]:
        """Results reported so far; waits up to `timeout` for the first when there is none."""
        results = drain(self.results, timeout)
        self.busy -= len(results)
        return results

    def close(self, timeout: float = 60) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join(timeout)
        self.threads = []

    def _run(self) -> None:
        if self.db is not None:
            connections[self.db.alias] = self.db
        backend = self.shared_backend
        own = backend is None
        try:
            if own:
                with self.lock:
                    backend, self.spare = self.spare, None
                backend = backend or self.factory()
                backend.open()  # one session (keep-alive) for every email of this thread
                read_environment_once(backend)
        except Exception as exc:  # every job this thread takes reports the failure
            log.exception("opening an email backend failed")
            backend, broken = None, exc
        else:
            broken = None
        try:
            while (job := self.jobs.get()) is not None:
                self.results.put(Result(job, error=broken) if broken else send(backend, job))
        finally:
            if own and backend is not None:
                try:
                    backend.close()
                except Exception:
                    log.warning("closing an email backend failed", exc_info=True)
            if self.db is not None:
                del connections[self.db.alias]  # lent, not ours to close
            connections.close_all()  # this thread's own, of any other database


def drain(results: queue.SimpleQueue, timeout: float | None) -> list:
    """Everything in `results` now, after waiting up to `timeout` for the first when it
    is empty (0: no wait; None: until one comes)."""
    items = []
    try:
        if timeout is None or timeout > 0:
            items.append(results.get(timeout=timeout))
        while True:
            items.append(results.get_nowait())
    except queue.Empty:
        pass
    return items


def read_environment_once(backend) -> None:
    """Read once what `requests` reads from the environment on every call of a backend's
    session: the proxies for its API's host (HTTPS_PROXY, NO_PROXY…), the CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) and a ~/.netrc login.

    The settings are the same as before; what changes is the cost. On every request a
    trusting session walks the whole process environment twice for proxies and looks
    for netrc files, which measured ~40 % of the CPU of a Postmark send
    (docs/benchmarks.md) — under the interpreter lock that every sending thread shares.
    Anymail posts every email of a backend to the one host of its `api_url`, so what
    the environment says for that host is what it says for each call. Backends without
    a requests session (SMTP, Amazon SES) are left as they are."""
    session = getattr(backend, "session", None)
    url = getattr(backend, "api_url", None)
    if isinstance(session, requests.Session) and url:
        read_session_environment(session, url)


def read_session_environment(session: requests.Session, url: str) -> None:
    """`read_environment_once` for one session whose requests all go to `url`'s host."""
    if not session.trust_env:
        return
    found = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies = found["proxies"]
    session.verify = found["verify"]
    if session.auth is None:
        session.auth = get_netrc_auth(url)
    session.trust_env = False


def send(backend, job: Job) -> Result:
    """Hand one email to the backend; the ESP's id, or the exception, for the loop."""
    try:
        backend.send_messages([job.email])
    except BaseException as exc:  # classified by the loop, never lost
        return Result(job, error=exc)
    return result_of(job)


def result_of(job: Job) -> Result:
    """A sent email's result: the ESP's message id, or our Message-ID when the backend
    reports none."""
    email = job.email
    status = getattr(email, "anymail_status", None)
    esp_id = getattr(status, "message_id", None)
    if esp_id is None:  # plain Django backends (SMTP) report none: our Message-ID it is
        esp_id = email.extra_headers["Message-ID"]
    return Result(job, esp_id=str(esp_id)[:200])


def make_pool(size: int, backend=None, db=None):
    """The senders for one run: an event loop (campaigns/email/http_sending.py) for
    Anymail's HTTP backends; threads for the others, for a backend the caller hands in
    (shared by the threads) and when EMAIL_SEND_TRANSPORT is "threads"."""
    from anymail.backends.base_requests import AnymailRequestsBackend
    from django.conf import settings

    from campaigns.email import http_sending

    if backend is not None:
        return SenderPool(size, backend, db=db)
    own = get_connection()
    if settings.EMAIL_SEND_TRANSPORT == "auto" and isinstance(own, AnymailRequestsBackend):
        own.open()
        read_environment_once(own)
        if http_sending.supports(own):
            return http_sending.AsyncSenderPool(size, own)
    # (Opened for the check above: the first thread takes it as it is.)
    return SenderPool(size, db=db, spare=own)
