"""Helpers for the browser tests: a customer's site on its own origin, Chromium, artifacts.

The customer's pages are served by a tiny HTTP(S) server on 127.0.0.1 (or on
*.shop.test, which Chromium resolves to 127.0.0.1), while reengage runs under
pytest-django's `live_server` on localhost: two different sites to the browser,
as in production.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A customer site with subdomains, for the cookie-domain test.
    "--host-resolver-rules=MAP *.shop.test 127.0.0.1",
]


@contextmanager
def launch_chromium():
    """Debian's Chromium under Playwright (never a downloaded browser), headless.

    Playwright's sync API keeps an event loop in this thread; the ORM calls the
    tests make between browser steps are still plain synchronous code, so
    Django's async-safety check is lifted for the duration.
    """
    import pytest
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install chromium (.ci/run does)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


class SiteServer:
    """Serves `pages[path]` (HTML strings) and `files[path]` (bytes, content type)."""

    def __init__(self, tls_dir: Path | None = None) -> None:
        self.pages: dict[str, str] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path in server.files:
                    body, content_type = server.files[path]
                elif path in server.pages:
                    body, content_type = server.pages[path].encode(), "text/html; charset=utf-8"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls_dir is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed_certificate(tls_dir))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=www.shop.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def page_html(loader: str, script: str = "", title: str = "Shoes") -> str:
    """A customer's page: the pasted loader in <head>, the page's own calls after it."""
    return (
        f"<!doctype html><html><head><title>{title}</title>{loader}</head>"
        f"<body><h1>{title}</h1><script>{script}</script></body></html>"
    )


def outbox(page) -> list[dict]:
    """The snippet's unacknowledged events in the page's localStorage."""
    return json.loads(page.evaluate("localStorage.getItem('rg_q') || '[]'"))


def wait_until_acknowledged(page, timeout_ms: float = 15_000) -> None:
    """Until the snippet released the page's calls and the server acknowledged them all.

    The visitor cookie is set in the same step that fills the outbox, so an
    empty outbox before it would only mean "not started yet".
    """
    page.wait_for_function(
        "() => document.cookie.includes('rg_aid=')"
        " && !JSON.parse(localStorage.getItem('rg_q') || '[]').length",
        timeout=timeout_ms,
    )


def wait_until_released(page) -> None:
    """Until the snippet has its settings and moved the page's calls to the outbox."""
    page.wait_for_function("() => document.cookie.includes('rg_aid=')")


def batch_posts(requests: list) -> list[dict]:
    """The JSON bodies of the /v1/batch requests among `requests`."""
    return [json.loads(r.post_data) for r in requests if r.url.endswith("/v1/batch")]


def artifacts_dir() -> Path:
    """Where browser tests leave screenshots: $TEST_ARTIFACTS_DIR, else .data/test-artifacts
    (gitignored; .ci/run prints the path so a CI run's screenshots can be found)."""
    return Path(os.environ.get("TEST_ARTIFACTS_DIR") or ROOT / ".data" / "test-artifacts")


@contextmanager
def artifacts_on_failure(request, context) -> Iterator[list[str]]:
    """Collect the console; on failure save it and a screenshot of each page."""
    console: list[str] = []
    context.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    context.on("weberror", lambda e: console.append(f"pageerror: {e.error}"))
    yield console
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed:
        return
    target = artifacts_dir() / re.sub(r"[^\w.-]+", "_", request.node.nodeid)
    target.mkdir(parents=True, exist_ok=True)
    (target / "console.log").write_text("\n".join(console) + "\n")
    for index, page in enumerate(context.pages):
        try:
            page.screenshot(path=str(target / f"page-{index}.png"), full_page=True)
            (target / f"page-{index}.html").write_text(page.content())
        except Exception as exc:  # a closed page: keep what we have
            (target / f"page-{index}.error").write_text(repr(exc))
