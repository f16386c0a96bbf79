"""The official browser SDKs, unchanged, in a real Chromium: Segment Analytics.js 2.0,
RudderStack JS v3 and RudderStack JS v1.1.

Each SDK's setup is copied from the site's install page (the text docs/site-owners.md
shows, see tests/test_sdk_docs.py), pasted into a customer's page served on
127.0.0.1, with the SDK's own file from the pinned npm package (tests/sdk/) served by
that page's server at the path the setup names. reengage runs under live_server on
localhost, another site to the browser. The events go through CORS preflights, the
real ingest and Redis; the tests flush and read PostgreSQL. Every request the page
makes is recorded: none may leave the machine.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from django.conf import settings

from tests.browser import SiteServer, artifacts_on_failure, launch_chromium, page_html
from tests.factories import make_site
from tests.sdk_packages import node_modules
from tests.tracking.conftest import copied_setup
from tracking import buffer
from tracking.flush import flush_until_empty
from tracking.keys import clear_key_cache
from tracking.models import Event, Profile
from tracking.trust import identity_proof

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "Ada@Example.com"
# Each SDK: its file in node_modules, the global its setup defines, its library name.
SDKS = {
    "analytics-next": ("@segment/analytics-next/dist/umd/index.js", "analytics", "analytics.js"),
    "rudderstack-v3": ("@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js",
                       "rudderanalytics", "RudderLabs JavaScript SDK"),
    "rudderstack-v1": ("rudder-sdk-js/dist/npm/index.js", "rudderanalytics",
                       "RudderLabs JavaScript SDK"),
}  # fmt: skip
SHORT_PATHS = {"t": "track", "p": "page", "i": "identify"}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def packages():
    return node_modules()


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as browser:
        # Ingest drops bots, and "HeadlessChrome" is one: browse as a visitor would.
        page = browser.new_page()
        user_agent = page.evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
        page.close()
        yield browser, user_agent


@pytest.fixture
def site(redis_client, live_server, settings):
    clear_key_cache()
    settings.PUBLIC_URL = live_server.url
    # Only the customer's host: the SDK's calls come from there, with its Origin.
    return make_site(domains=["127.0.0.1"])


def user_hash(site, email: str) -> str:
    """The identity proof the shop's backend renders for user-42 (docs/security.md)."""
    return identity_proof(site.secret_key, "user-42", email)


class Visit:
    """A visitor's browser on the customer's page: every request and answer, recorded."""

    def __init__(self, context) -> None:
        self.context = context
        self.requests: list = []
        self.answers: list[tuple[str, int, dict | None]] = []  # (call type, status, body)
        context.on("request", lambda r: self.requests.append(r))
        context.on("requestfinished", self._finished)

    def _finished(self, request) -> None:
        if request.method != "POST" or "/v1/" not in request.url:
            return
        response = request.response()
        body = json.loads(request.post_data) if request.post_data else None
        for call_type in call_types(request.url, body):
            self.answers.append((call_type, response.status if response else 0, body))

    def acknowledged(self) -> set[str]:
        return {call_type for call_type, status, _ in self.answers if status == 200}

    def off_machine(self) -> list[str]:
        return [r.url for r in self.requests
                if urlsplit(r.url).hostname not in LOCAL_HOSTS]  # fmt: skip


def call_types(url: str, body: dict | None) -> list[str]:
    last = urlsplit(url).path.rsplit("/", 1)[-1]
    if last in ("batch", "b"):
        return [call.get("type", "") for call in (body or {}).get("batch", [])]
    return [SHORT_PATHS.get(last, last)]


def message_ids(body: dict | None) -> set[str]:
    calls = body.get("batch", [body]) if body else []
    return {call["messageId"] for call in calls}


def visit_with(chromium, request, packages, setup: str, key: str, calls: str):
    """Serve the pasted setup (and the SDK's own file) on 127.0.0.1; open the page."""
    file_path, _, _ = SDKS[key]
    served = re.search(r'<script src="(/js/[^"]+)"></script>', setup)
    assert served, "the setup names no SDK file to serve"
    browser, user_agent = chromium
    server = SiteServer().__enter__()
    request.addfinalizer(lambda: server.__exit__(None))
    server.files[served.group(1)] = ((packages / file_path).read_bytes(), "text/javascript")
    server.pages["/shop"] = page_html(setup, calls, title="Trail shoes")
    context = browser.new_context(user_agent=user_agent)
    request.addfinalizer(context.close)
    visit = Visit(context)
    return server, context, visit


def wait_for(visit: Visit, types: set[str], timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    page = visit.context.pages[0]
    while time.monotonic() < deadline:
        if types <= visit.acknowledged():
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"acknowledged only {visit.acknowledged()} of {types}: {visit.answers}")


def stream_events() -> int:
    """How many events the Redis stream took (each entry says how many it carries)."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    return sum(int(fields[b"n"]) for _, fields in client.xrange(buffer.STREAM))


def run_sdk(chromium, request, packages, admin_client, site, key: str, setup: str = "") -> Visit:
    _, global_name, _ = SDKS[key]
    setup = setup or copied_setup(admin_client, site, key)
    # What the customer's page does once the setup is in its <head>: the visitor signs
    # in (the shop's backend rendered the user_hash) and looks at a product.
    calls = (
        f"{global_name}.identify('user-42', {{email: {json.dumps(EMAIL)}, first_name: 'Ada', "
        f"user_hash: {json.dumps(user_hash(site, EMAIL))}}});"
        f"{global_name}.track('Product Viewed', {{product_id: 'lamp', price: 39}});"
    )
    server, context, visit = visit_with(chromium, request, packages, setup, key, calls)
    with artifacts_on_failure(request, context) as console:
        page = context.new_page()
        page.goto(server.url("/shop"))
        try:
            wait_for(visit, {"page", "track", "identify"})
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nconsole: {console}") from None
    return visit


def assert_landed(site, key: str) -> dict[str, Event]:
    _, _, library = SDKS[key]
    flush_until_empty()
    events = list(Event.objects.filter(site=site))
    by_type = {e.type: e for e in events}
    assert sorted(e.type for e in events) == ["identify", "page", "track"], events
    assert len({e.message_id for e in events}) == 3
    assert by_type["track"].name == "Product Viewed"
    assert by_type["track"].properties == {"product_id": "lamp", "price": 39}
    assert by_type["track"].context["library"]["name"] == library
    assert urlsplit(by_type["page"].context["page"]["url"]).path == "/shop"
    assert "user_hash" not in json.dumps([e.context for e in events])
    person = Profile.objects.get(site=site, user_id="user-42")
    assert (person.email, person.email_verified) == (EMAIL, True)
    return by_type


@pytest.mark.parametrize("key", list(SDKS))
def test_page_track_and_identify_land_from_the_sdk_and_the_email_is_verified(
    chromium, request, packages, admin_client, site, key
):
    visit = run_sdk(chromium, request, packages, admin_client, site, key)
    assert_landed(site, key)
    assert visit.off_machine() == []
    assert {status for _, status, _ in visit.answers} == {200}


@pytest.mark.parametrize("key", list(SDKS))
def test_a_call_retried_after_a_503_is_stored_once(
    chromium, request, packages, admin_client, site, key, lost_acknowledgement
):
    visit = run_sdk(chromium, request, packages, admin_client, site, key)
    assert lost_acknowledgement.count == 0, "no request was answered 503"
    refused = [body for _, status, body in visit.answers if status == 503]
    assert len(refused) == 1
    retried = message_ids(refused[0])
    resent = [body for _, status, body in visit.answers
              if status == 200 and message_ids(body) & retried]  # fmt: skip
    assert resent, "the SDK did not resend the call answered 503"
    # The stream took the call twice (the lost answer's copy and the retry) ...
    assert stream_events() == 3 + len(retried)
    assert_landed(site, key)  # ... PostgreSQL has it once.
    assert Event.objects.filter(site=site, message_id__in=retried).count() == len(retried)
    assert visit.off_machine() == []


@pytest.mark.parametrize("fault", [False, True], ids=["plain", "after-a-503"])
def test_analytics_js_batching_delivers_through_its_batch_path(
    chromium, request, packages, admin_client, site, fault
):
    setup = copied_setup(admin_client, site, "analytics-next")
    assert setup.count("// deliveryStrategy:") == 1
    batching = setup.replace("// deliveryStrategy:", "deliveryStrategy:")
    buffer.LOST_ACKNOWLEDGEMENTS.count = 1 if fault else 0
    try:
        visit = run_sdk(chromium, request, packages, admin_client, site, "analytics-next",
                        batching)  # fmt: skip
    finally:
        buffer.LOST_ACKNOWLEDGEMENTS.count = 0
    posts = [r for r in visit.requests if r.method == "POST"]
    assert posts and {urlsplit(r.url).path for r in posts} == {"/v1/b"}
    statuses = [status for _, status, _ in visit.answers]
    assert (503 in statuses) is fault
    assert stream_events() == (6 if fault else 3)  # the whole batch, resent once
    assert_landed(site, "analytics-next")
    assert visit.off_machine() == []


def test_a_headless_user_agent_is_answered_200_and_dropped_as_a_bot(
    chromium, request, packages, admin_client, site
):
    browser, _ = chromium
    setup = copied_setup(admin_client, site, "rudderstack-v3")
    file_path, _, _ = SDKS["rudderstack-v3"]
    with SiteServer() as server:
        server.files["/js/rudderstack-analytics.umd.js"] = (
            (packages / file_path).read_bytes(), "text/javascript",
        )  # fmt: skip
        server.pages["/shop"] = page_html(setup, "rudderanalytics.track('Product Viewed');")
        context = browser.new_context()  # Playwright's own HeadlessChrome user agent
        request.addfinalizer(context.close)
        visit = Visit(context)
        page = context.new_page()
        page.goto(server.url("/shop"))
        wait_for(visit, {"page", "track"})
    flush_until_empty()
    assert Event.objects.filter(site=site).count() == 0
