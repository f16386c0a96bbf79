"""The site install page: what a site owner copies, and whether events arrive.

`install_examples` renders the server-side examples (curl, Python, Node, PHP)
from templates/tracking/install/, against this instance's PUBLIC_URL. They read
the secret key from the REENGAGE_SECRET_KEY environment variable: the page is
seen by whoever may open the site, and the key is shown in full only once, when
it is created or rotated. tests/tracking/test_site_install_live.py runs them for real.

`sdk_snippets` renders the setup for the official Segment and RudderStack SDKs
(templates/tracking/install/sdk/): what each needs to send to reengage
(`apiHost` and inline `cdnSettings`, `dataPlaneUrl` and `getSourceConfig`, `host`).
docs/site-owners.md shows the same text, and tests/tracking/test_sdk_browser.py and
tests/tracking/test_sdk_node.py run it, copied from the page, with the real npm packages.

`last_event` answers the page's live check from `Site.last_event_at`, which the
flusher moves forward with every stored batch, and from the last drop per reason
(tracking.buffer.last_dropped): "received, dropped as a bot (user agent …)".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.template.loader import render_to_string
from django.utils.timesince import timesince

from tracking import buffer
from tracking.ingest import BROWSER_BACKFILL, MAX_FUTURE_SKEW
from tracking.models import Event, Site

SECRET_KEY_VARIABLE = "REENGAGE_SECRET_KEY"  # noqa: S105 (the name of the variable)
# Mixed case on purpose: the examples show that user_hash lower-cases the address.
EXAMPLE_EMAIL = "Ada@Example.com"
EXAMPLE_USER_ID = "user-42"
WAITING = "No events yet — waiting…"


@dataclass(frozen=True)
class Example:
    key: str
    label: str
    how_to_run: str
    code: str


EXAMPLES = [
    ("curl", "curl (shell)", "bash example.sh", "tracking/install/curl.sh.txt"),
    ("python", "Python", "python3 example.py", "tracking/install/python.py.txt"),
    ("node", "Node.js", "node example.js", "tracking/install/node.js.txt"),
    ("php", "PHP", "php example.php", "tracking/install/php.php.txt"),
]


def install_examples(public_url: str) -> list[Example]:
    context = {"api": public_url.rstrip("/"), "email": EXAMPLE_EMAIL, "user_id": EXAMPLE_USER_ID}
    return [
        Example(key, label, how_to_run, render_to_string(template, context))
        for key, label, how_to_run, template in EXAMPLES
    ]


@dataclass(frozen=True)
class SdkSnippet:
    key: str
    label: str
    where: str  # "browser" or "server"
    package: str  # the npm package, at the version the tests pin (tests/sdk/package.json)
    code: str


SDKS = [
    ("analytics-next", "Segment Analytics.js 2.0", "browser", "@segment/analytics-next",
     "tracking/install/sdk/analytics-next.html.txt"),
    ("rudderstack-v3", "RudderStack JS v3", "browser", "@rudderstack/analytics-js",
     "tracking/install/sdk/rudderstack-v3.html.txt"),
    ("rudderstack-v1", "RudderStack JS v1.1", "browser", "rudder-sdk-js",
     "tracking/install/sdk/rudderstack-v1.html.txt"),
    ("segment-node", "Segment for Node.js", "server", "@segment/analytics-node",
     "tracking/install/sdk/segment-node.js.txt"),
    ("rudderstack-node", "RudderStack for Node.js", "server", "@rudderstack/rudder-sdk-node",
     "tracking/install/sdk/rudderstack-node.js.txt"),
]  # fmt: skip


def sdk_snippets(public_url: str, write_key: str) -> list[SdkSnippet]:
    """Each SDK's setup against this instance; browser ones carry the site's write key."""
    api = public_url.rstrip("/")
    parts = urlsplit(api)
    context = {
        "api": api,
        # Analytics.js takes its host without the scheme, and the scheme apart.
        "api_host": parts.netloc + parts.path,
        "protocol": parts.scheme or "https",
        "write_key": write_key,
        "email": EXAMPLE_EMAIL,
    }
    return [
        SdkSnippet(key, label, where, package, render_to_string(template, context).strip() + "\n")
        for key, label, where, package, template in SDKS
    ]


def snippet_parts(site: Site, public_url: str) -> tuple[str, str]:
    """The loader (<script> tags) and the no-JavaScript pixel (<noscript>), apart."""
    from tracking.snippet import loader_html

    loader, pixel = loader_html(site, public_url).split("\n", 1)
    return loader, pixel


def dropped_since(site: Site, since: datetime | None, now: datetime) -> list[dict]:
    """What reached us but was not stored since `since`, newest first, in words.

    An owner testing with Playwright or Puppeteer gets 200 and sees nothing stored:
    their headless browser counts as a bot. Saying so here is the whole answer.
    """
    notes = []
    for reason, note in buffer.last_dropped(site.pk).items():
        if since is not None and note["at"] <= since:
            continue
        detail = note["detail"]
        when = ago(note["at"], now)
        if reason == "bot":
            agent = f" (user agent “{detail}”)" if detail else ""
            words = (
                f"Received {when}, dropped as a bot{agent}: automated and headless browsers "
                "are not stored. Check with an ordinary browser window."
            )
        else:
            words = (
                f"Refused {when}: a page on {detail} sent events, but that host is not one "
                "of this site's domains. Add it on the site's page."
            )
        notes.append({"reason": reason, "at": note["at"].isoformat(), "detail": detail,
                      "message": words, "_at": note["at"]})  # fmt: skip
    notes.sort(key=lambda n: n.pop("_at"), reverse=True)
    return notes


def last_event(site: Site, now: datetime) -> dict:
    """When the site's latest stored event arrived, what it was and where it came from,
    and what arrived after it but was dropped (bots) or refused (origin), and why."""
    answer = _last_stored(site, now)
    dropped = dropped_since(site, site.last_event_at, now)
    answer["dropped"] = dropped
    if dropped:
        stored = answer["message"] if answer["received"] else "No events stored yet."
        answer["message"] = " ".join([stored, *(note["message"] for note in dropped)])
    return answer


def _last_stored(site: Site, now: datetime) -> dict:
    received_at = site.last_event_at
    if received_at is None:
        return {"received": False, "message": WAITING}
    # The newest batch's events share its receive time. A browser's timestamp lies
    # within the backfill window of it, so the search stays in one or two monthly
    # partitions; a server's backfill may not, and is then described by time alone.
    event = (
        Event.objects.filter(
            site=site,
            received_at=received_at,
            timestamp__gte=received_at - BROWSER_BACKFILL - timedelta(minutes=1),
            timestamp__lte=received_at + MAX_FUTURE_SKEW,
        )
        .order_by("-timestamp")
        .first()
    )
    answer = {
        "received": True,
        "received_at": received_at.isoformat(),
        "ago": ago(received_at, now),
        "type": event.type if event else "",
        "name": event.name if event else "",
        "source": event_source(event) if event else "",
    }
    message = f"Last event received {answer['ago']}"
    if event is not None:
        message += f": {event.type}" + (f" “{event.name}”" if event.name else "")
        message += f", from {answer['source']}"
    answer["message"] = message + "."
    return answer


def ago(then: datetime, now: datetime) -> str:
    seconds = int((now - then).total_seconds())
    if seconds < 60:
        return "just now" if seconds < 2 else f"{seconds} seconds ago"
    return f"{timesince(then, now)} ago"


def event_source(event: Event) -> str:
    """Where an event came from, in words: the page it was sent from, or the library."""
    context = event.context if isinstance(event.context, dict) else {}
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    library = context.get("library") if isinstance(context.get("library"), dict) else {}
    url = page.get("url") if isinstance(page.get("url"), str) else ""
    name = library.get("name") if isinstance(library.get("name"), str) else ""
    if url:
        return f"{url[:200]} ({name})" if name else url[:200]
    if name:
        return f"a server or app using {name[:100]}"
    return "a server-side call"
