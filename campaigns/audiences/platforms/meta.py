"""Meta: audience joins and leaves as Conversions API events, and customer lists.

Conversions API (https://developers.facebook.com/docs/marketing-api/conversions-api/):
POST {META_GRAPH_URL}/{version}/{pixel_id}/events with `data` (at most 1,000
server events) and `access_token`, form-encoded as Meta's own SDK sends them. Each
join is an event named `reengage_join_<audience>`, each leave `reengage_leave_<…>`,
with `action_source: website`, the browser's `fbp`/`fbc`, client IP and user agent,
and, only for people whose consent allows it (the change carries their email hash),
`em` and `external_id` as SHA-256 hex. `event_id` is stable per (destination,
change), so Meta drops a retried event it already has.

Custom Audiences (https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users):
POST (add) or DELETE (remove) {version}/{custom_audience_id}/users with `payload`
{schema: ["EMAIL", "PHONE"], is_raw: true, data: [[email hash, phone hash], …]}
(at most 10,000 rows) and `session` {session_id, batch_seq, last_batch_flag,
estimated_num_total}. Hashes are those of campaigns.audiences.membership
(normalize_email: trimmed, lower-cased; phones as country code and number, digits
only), which is what Meta's customer-file normalisation asks for.

Meta's official `facebook-business` SDK sends through its own `requests` session,
so it cannot go through the one guarded outbound client; these are the SDK's
documented requests, written out.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timedelta

from django.conf import settings

from campaigns.audiences.platforms.base import Ids, Item, PlatformAnswer, Request, error_text
from campaigns.audiences.platforms.base import retry_after_seconds as _retry_after
from campaigns.models import PlatformBatch, PlatformDestination

# Graph API error codes Meta documents as throttling or temporary.
TRANSIENT_CODES = {1, 2, 4, 17, 32, 341, 613, 80003, 80004, 80014}
# Conversions API: event_time at most 7 days in the past.
MAX_EVENT_AGE = timedelta(days=7) - timedelta(hours=1)


def graph_url(*path: str) -> str:
    quoted = "/".join(urllib.parse.quote(p, safe="") for p in path)
    return f"{settings.META_GRAPH_URL.rstrip('/')}/{settings.META_GRAPH_API_VERSION}/{quoted}"


def form(fields: dict[str, object], token: str) -> bytes:
    """Graph API parameters form-encoded, JSON values as JSON text (as the SDK does)."""
    encoded = {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
               for k, v in fields.items()}  # fmt: skip
    encoded["access_token"] = token
    return urllib.parse.urlencode(encoded).encode()


def meta_outcome(
    status: int | None, headers: dict[str, str], body: bytes, now: datetime
) -> PlatformAnswer:
    if status is not None and 200 <= status < 300:
        return PlatformAnswer(True, status, False)
    message = error_text(body)
    retryable = status is None or status == 429 or status >= 500
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError, UnicodeDecodeError):
        error = {}
    if isinstance(error, dict) and (
        error.get("is_transient") or error.get("code") in TRANSIENT_CODES
    ):
        retryable = True
    retry_after = _retry_after(headers, now)
    return PlatformAnswer(False, status, retryable, message or f"HTTP {status}", retry_after)


def site_url(destination: PlatformDestination) -> str:
    domains = [d.removeprefix("*.") for d in destination.audience.site.domains]
    return f"https://{domains[0]}/" if domains else ""


class MetaConversions:
    kind = PlatformDestination.Kind.META_CAPI
    mixed_actions = True
    browser_preference = "(a.fbp <> '' OR a.fbc <> '')"

    @property
    def batch_size(self) -> int:
        return min(settings.META_CAPI_BATCH_SIZE, 1000)

    def matchable(self, ids: Ids) -> bool:
        # A website event needs the user agent, and Meta needs something of ours to match.
        return bool(ids.user_agent and (ids.fbp or ids.fbc or ids.email_sha256))

    def event(self, destination: PlatformDestination, item: Item, now: datetime) -> dict:
        ids = item.ids
        user_data: dict[str, object] = {"client_user_agent": ids.user_agent}
        if ids.fbp:
            user_data["fbp"] = ids.fbp
        if ids.fbc:
            user_data["fbc"] = ids.fbc
        if ids.client_ip:
            user_data["client_ip_address"] = ids.client_ip
        if ids.email_sha256:
            user_data["em"] = [ids.email_sha256]
            if ids.external_id_sha256:
                user_data["external_id"] = [ids.external_id_sha256]
        joined = item.action == "add"
        event = {
            "event_name": destination.join_event if joined else destination.leave_event,
            "event_time": int(max(item.at, now - MAX_EVENT_AGE).timestamp()),
            "event_id": f"reengage-{destination.pk}-{item.change_id}",
            "action_source": "website",
            "user_data": user_data,
            "custom_data": {"reengage_audience": str(destination.audience_id),
                            "reengage_action": "join" if joined else "leave"},
        }  # fmt: skip
        url = site_url(destination)
        if url:
            event["event_source_url"] = url
        return event

    def requests(self, destination, batch, items, now) -> list[Request]:
        if not items:
            return []
        payload: dict[str, object] = {"data": [self.event(destination, i, now) for i in items]}
        if destination.test_event_code:
            payload["test_event_code"] = destination.test_event_code
        return [Request("POST", graph_url(destination.pixel_id, "events"), payload, len(items))]

    def encode(self, destination, request: Request, now) -> None:
        request.headers = {"Content-Type": "application/x-www-form-urlencoded"}
        request.body = form(request.payload, destination.credential)

    def outcome(self, status, headers, body, now) -> PlatformAnswer:
        return meta_outcome(status, headers, body, now)

    def test_request(self, destination, now) -> Request:
        item = Item(0, "add", 0, now, Ids(fbp=f"fb.1.{int(now.timestamp() * 1000)}.1000000000",
                                          user_agent="reengage-send-test/1"))  # fmt: skip
        event = self.event(destination, item, now)
        event.update(event_name="reengage_test", event_id=f"reengage-test-{int(now.timestamp())}")
        payload: dict[str, object] = {"data": [event]}
        if destination.test_event_code:
            payload["test_event_code"] = destination.test_event_code
        return Request("POST", graph_url(destination.pixel_id, "events"), payload, 1)


class MetaCustomAudience:
    kind = PlatformDestination.Kind.META_AUDIENCE
    mixed_actions = False
    browser_preference = None
    SCHEMA = ["EMAIL", "PHONE"]

    @property
    def batch_size(self) -> int:
        return min(settings.META_AUDIENCE_BATCH_SIZE, 10_000)

    def matchable(self, ids: Ids) -> bool:
        return bool(ids.email_sha256 or ids.phone_digits_sha256)

    def requests(self, destination, batch: PlatformBatch, items, now) -> list[Request]:
        if not items:
            return []
        payload = {
            "payload": {
                "schema": self.SCHEMA,
                "is_raw": True,
                "data": [[i.ids.email_sha256, i.ids.phone_digits_sha256] for i in items],
            },
            "session": {
                "session_id": batch.session_id,
                "batch_seq": batch.batch_seq,
                "last_batch_flag": batch.last_batch_flag,
                "estimated_num_total": batch.estimated_num_total,
            },
        }
        method = "POST" if items[0].action == "add" else "DELETE"
        return [Request(method, graph_url(destination.custom_audience_id, "users"), payload,
                        len(items))]  # fmt: skip

    def encode(self, destination, request: Request, now) -> None:
        if request.method == "GET":
            token = urllib.parse.urlencode({"access_token": destination.credential})
            request.send_url = f"{request.url}&{token}"
            return
        request.headers = {"Content-Type": "application/x-www-form-urlencoded"}
        request.body = form(request.payload, destination.credential)

    def outcome(self, status, headers, body, now) -> PlatformAnswer:
        return meta_outcome(status, headers, body, now)

    def test_request(self, destination, now) -> Request:
        # Reads the audience: checks the token and the id without changing anything.
        url = graph_url(destination.custom_audience_id) + "?fields=id,name"
        return Request("GET", url, {}, 0)
