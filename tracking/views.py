"""The ingest API (Segment HTTP tracking spec) and the secret-key profile API.

The hot path: parse the key (cached per process), check origin, size, type and
schema, drop bots, append to the Redis stream, answer. No ORM, no session.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from datetime import UTC, datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from tracking import buffer
from tracking.ingest import (
    MAX_BODY_BYTES,
    IngestError,
    SiteKey,
    is_bot,
    is_storable,
    parse_batch,
)
from tracking.keys import basic_username, client_ip, lookup_key, url_host

log = logging.getLogger(__name__)

JSON_TYPES = {"application/json", "text/plain"}
# The RudderStack Node SDK gzips its body and lets axios label the Buffer as a form:
# taken as JSON only when gzipped, as that SDK sends it (a real form body is still 415).
GZIP_ONLY_TYPES = {"application/x-www-form-urlencoded"}
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Max-Age": "86400",
    # Let the snippet read how long to wait after a 429 or 503.
    "Access-Control-Expose-Headers": "Retry-After",
}
# The request headers a browser may send cross-origin, by the SDK that sends them
# (docs/api.md lists them). A preflight is answered with those it asked for that are
# here, never with whatever it asked: a header outside this list stays refused.
ALLOWED_REQUEST_HEADERS = frozenset(
    {
        "content-type",  # application/json (RudderStack) is not CORS-safelisted
        "authorization",  # the write key as the HTTP Basic user
        "content-encoding",  # gzip
        "x-retry-count",  # Segment Analytics.js 2.0, on a retry
        "anonymousid",  # RudderStack JS v1.1 and v3 (base64 of the anonymousId)
        "sentat",  # RudderStack JS v3
        "rsa-recovered",  # RudderStack JS v3, an event reclaimed from another tab
        "rsa-retry-attempt",  # RudderStack JS v3, on a retry, and the three below
        "rsa-retry-reason",
        "rsa-since-first-attempt",
        "rsa-since-last-attempt",
    }
)


def _read_body(request: HttpRequest) -> bytes:
    content_type = request.content_type or ""
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").lower()
    if content_type not in JSON_TYPES and not (
        content_type in GZIP_ONLY_TYPES and encoding == "gzip"
    ):
        raise IngestError(
            415, f"Content-Type must be application/json (got {content_type or 'none'})",
            "Content-Type",
        )  # fmt: skip
    if not request.META.get("CONTENT_LENGTH"):
        # A chunked body: Django's WSGI request would read it as empty, and reading
        # it whole could take any amount of memory. Every SDK sends a length.
        raise IngestError(
            411, "send a Content-Length header (chunked bodies are not accepted)",
            "Content-Length",
        )  # fmt: skip
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise IngestError(413, f"the body is larger than {MAX_BODY_BYTES} bytes", "body")
    body = request.read(MAX_BODY_BYTES + 1)
    if encoding == "gzip":
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            body = inflater.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error:
            raise IngestError(400, "the body is not valid gzip", "Content-Encoding") from None
        if len(body) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise IngestError(413, f"the body inflates past {MAX_BODY_BYTES} bytes", "body")
    elif encoding not in ("", "identity"):
        raise IngestError(415, f"Content-Encoding {encoding!r} is not supported (use gzip)",
                          "Content-Encoding")  # fmt: skip
    if len(body) > MAX_BODY_BYTES:
        raise IngestError(413, f"the body is larger than {MAX_BODY_BYTES} bytes", "body")
    return body


def _parse_json(body: bytes):
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise IngestError(400, f"the body is not valid JSON ({exc})"[:200], "body") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _cors(response: HttpResponse, origin: str) -> HttpResponse:
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        for header, value in CORS_HEADERS.items():
            response[header] = value
    response["Vary"] = "Origin"
    return response


def allowed_headers(requested: str) -> str:
    """A preflight's Access-Control-Request-Headers → those of them on the allow-list."""
    names = (name.strip() for name in requested.split(","))
    return ", ".join(name for name in names if name.lower() in ALLOWED_REQUEST_HEADERS)


def _preflight(request: HttpRequest, origin: str) -> HttpResponse:
    response = _cors(HttpResponse(status=204), origin)
    if origin:
        allowed = allowed_headers(request.META.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", ""))
        if allowed:
            response["Access-Control-Allow-Headers"] = allowed
        # The answer differs by the headers asked for: caches must key on them.
        response["Vary"] = "Origin, Access-Control-Request-Headers"
    return response


def _error(exc: IngestError, origin: str = "") -> JsonResponse:
    response = JsonResponse(exc.as_json(), status=exc.status)
    return _cors(response, origin)


# --- the endpoints ---------------------------------------------------------------


def record(
    payload, *, key: SiteKey, ip: str, single_type: str | None, body_size: int | None = None
) -> list[dict]:
    """Validate calls, drop (and count) bots, buffer the rest: what every ingest door does.

    Raises IngestError, buffer.RateLimited or buffer.StorageUnavailable.
    """
    received_at = datetime.now(UTC)
    dropped: Counter[str] = Counter()  # parts of events left out (invalid ad ids)
    events, bots = parse_batch(
        payload, key=key, received_at=received_at, client_ip=ip, single_type=single_type,
        body_size=body_size, dropped=dropped,
    )  # fmt: skip
    if bots:
        buffer.count_dropped(
            key.site_id, "bot", bots, received_at.date().isoformat(), _bot_agent(payload)
        )
    for reason, n in dropped.items():
        buffer.count_dropped(key.site_id, reason, n, received_at.date().isoformat())
    buffer.accept(
        events,
        site_id=key.site_id,
        site_limit=key.events_per_minute,
        client_key=buffer.client_key(ip),
    )
    return events


def _bot_agent(payload) -> str:
    """The first user agent in the payload that counts as a bot (only read when bots were)."""
    calls = payload.get("batch") if isinstance(payload, dict) else None
    for call in (calls if isinstance(calls, list) else [payload])[:100]:
        context = call.get("context") if isinstance(call, dict) else None
        agent = context.get("userAgent") if isinstance(context, dict) else None
        if isinstance(agent, str) and is_bot(agent):
            return agent
    return ""


def _ingest(request: HttpRequest, single_type: str | None) -> HttpResponse:
    origin = request.META.get("HTTP_ORIGIN", "")
    if request.method == "OPTIONS":
        return _preflight(request, origin)
    if request.method != "POST":
        response = JsonResponse({"success": False, "error": "use POST"}, status=405)
        response["Allow"] = "POST, OPTIONS"
        return response
    try:
        key_name = basic_username(request)
        body = _read_body(request)
        payload = _parse_json(body)
        if not key_name and isinstance(payload, dict):
            key_name = payload.get("writeKey") or ""
            if not isinstance(key_name, str):
                raise IngestError(400, "must be a string", "writeKey")
        if not key_name:
            raise IngestError(
                401, "no write key: send it as the HTTP Basic username or as writeKey",
                "writeKey",
            )  # fmt: skip
        key = lookup_key(key_name)
        if key is None:
            raise IngestError(401, "unknown write key", "writeKey")
        cors_origin = ""
        if origin and not key.trusted:
            host = url_host(origin)
            if host is None or not key.allows_origin(host):
                buffer.remember_refused(key.site_id, "origin", origin[:300])
                raise IngestError(
                    403, f"origin {origin} is not in this site's allowed domains", "Origin"
                )
            cors_origin = origin
        record(payload, key=key, ip=client_ip(request), single_type=single_type,
               body_size=len(body))  # fmt: skip
        if buffer.acknowledgement_lost():
            raise buffer.StorageUnavailable("test-only fault: the acknowledgement was lost")
    except IngestError as exc:
        return _error(exc, origin)
    except buffer.RateLimited as exc:
        response = _error(
            IngestError(429, f"rate limit exceeded for this {exc.scope}; retry later", "rate"),
            origin,
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    except buffer.StorageUnavailable:
        response = _error(
            IngestError(503, "storage is unavailable; retry later", "storage"), origin
        )
        response["Retry-After"] = "5"
        return response
    return _cors(JsonResponse({"success": True}), cors_origin)


@csrf_exempt
def batch(request: HttpRequest) -> HttpResponse:
    return _ingest(request, None)


def _single(event_type: str):
    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        return _ingest(request, event_type)

    view.__name__ = event_type
    return view


track = _single("track")
page = _single("page")
screen = _single("screen")
identify = _single("identify")
alias = _single("alias")
group = _single("group")


# Other apps add to the snippet's settings without tracking knowing them: each
# callable takes the Site and the request and returns a dict merged into the answer (e.g. the
# campaigns app adds the URL of tags.js for sites whose audiences have tags).
SETTINGS_EXTENSIONS: list = []


@require_GET
def site_settings(request: HttpRequest, write_key: str) -> JsonResponse:
    """What the snippet needs to know before it may send anything."""
    from tracking.models import Site

    site = (
        Site.objects.filter(write_key=write_key).only("consent_mode", "cookie_days").first()
        if is_storable(write_key)
        else None
    )
    if site is None:
        response = JsonResponse({"error": "unknown write key", "field": "writeKey"}, status=404)
    else:
        answer = {
            "consentMode": site.consent_mode,
            "cookieDays": site.cookie_days,
            "api": settings.PUBLIC_URL,
        }
        for extension in SETTINGS_EXTENSIONS:
            answer.update(extension(site, request))
        response = JsonResponse(answer)
        response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response
