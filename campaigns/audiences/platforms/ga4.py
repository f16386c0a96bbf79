"""GA4: audience joins and leaves as Measurement Protocol events.

https://developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events:
POST {GA4_MP_URL}/mp/collect?measurement_id=…&api_secret=… with {client_id,
consent, events: [{name, params}]}, one client per request and at most 25 events.
The client id is the GA4 one from the browser's `_ga` cookie (tracking.AdIdentifiers),
so the events land on the same GA4 user as the site's own tag, and a GA4 audience
"did reengage_join_x and not reengage_leave_x", linked to Google Ads, mirrors ours.

/mp/collect answers 2xx even to events it drops; the admin's "send test" posts to
/debug/mp/collect, which answers with validationMessages.
"""

from __future__ import annotations

import json
import urllib.parse

from django.conf import settings

from campaigns.audiences.platforms.base import (
    Ids,
    Item,
    PlatformAnswer,
    Request,
    compact,
    error_text,
    retry_after_seconds,
)
from campaigns.models import PlatformDestination

MAX_EVENTS = 25
CONSENT = {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}


class GA4Events:
    kind = PlatformDestination.Kind.GA4
    mixed_actions = True
    browser_preference = "(a.ga_client_id <> '')"

    @property
    def batch_size(self) -> int:
        return settings.GA4_BATCH_SIZE

    def matchable(self, ids: Ids) -> bool:
        return bool(ids.ga_client_id)

    def url(self, destination, path: str = "/mp/collect") -> str:
        query = urllib.parse.urlencode({"measurement_id": destination.measurement_id})
        return f"{settings.GA4_MP_URL.rstrip('/')}{path}?{query}"

    def event(self, destination, item: Item) -> dict:
        joined = item.action == "add"
        return {
            "name": destination.join_event if joined else destination.leave_event,
            "params": {"reengage_audience": str(destination.audience_id),
                       "reengage_event_id": f"reengage-{destination.pk}-{item.change_id}",
                       "engagement_time_msec": 1},
        }  # fmt: skip

    def requests(self, destination, batch, items, now) -> list[Request]:
        # One request per client (in the order of each client's first change), its
        # events in change order, at most 25 per request.
        per_client: dict[str, list[Item]] = {}
        for item in items:
            per_client.setdefault(item.ids.ga_client_id, []).append(item)
        found = []
        for client_id, mine in per_client.items():
            for start in range(0, len(mine), MAX_EVENTS):
                chunk = mine[start : start + MAX_EVENTS]
                payload = {"client_id": client_id, "consent": CONSENT,
                           "events": [self.event(destination, i) for i in chunk]}  # fmt: skip
                found.append(Request("POST", self.url(destination), payload, len(chunk)))
        return found

    def encode(self, destination, request: Request, now) -> None:
        secret = urllib.parse.urlencode({"api_secret": destination.credential})
        request.send_url = f"{request.url}&{secret}"
        request.headers = {"Content-Type": "application/json"}
        request.body = compact(request.payload)

    def outcome(self, status, headers, body, now) -> PlatformAnswer:
        if status is not None and 200 <= status < 300:
            # The validation server lists what GA4 would drop; /mp/collect says nothing.
            try:
                messages = json.loads(body).get("validationMessages") if body else None
            except (ValueError, AttributeError, UnicodeDecodeError):
                messages = None
            if messages:
                return PlatformAnswer(False, status, False, json.dumps(messages)[:900])
            return PlatformAnswer(True, status, False)
        retryable = status is None or status == 429 or status >= 500
        return PlatformAnswer(False, status, retryable, error_text(body) or f"HTTP {status}",
                       retry_after_seconds(headers, now))  # fmt: skip

    def test_request(self, destination, now) -> Request:
        payload = {"client_id": "1000000000.1000000000", "consent": CONSENT,
                   "events": [{"name": "reengage_test", "params": {"engagement_time_msec": 1}}]}  # fmt: skip
        return Request("POST", self.url(destination, "/debug/mp/collect"), payload, 1)
