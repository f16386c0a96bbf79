"""The ingest API (Segment HTTP tracking spec) and the secret-key profile API.

The hot path: parse the key (cached per process), check origin, size, type and
schema, drop bots, append to the Redis stream, answer. No ORM, no session.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import time
import zlib
from datetime import UTC, datetime
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from reengage import encryption
from tracking import buffer
from tracking.ingest import MAX_BODY_BYTES, IngestError, SiteKey, is_storable, parse_batch

log = logging.getLogger(__name__)

JSON_TYPES = {"application/json", "text/plain"}
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, Content-Encoding",
    "Access-Control-Max-Age": "86400",
    # Let the snippet read how long to wait after a 429 or 503.
    "Access-Control-Expose-Headers": "Retry-After",
}

# --- the site behind a key (per-process cache; keys change rarely) -------------

_key_cache: dict[str, tuple[SiteKey | None, float]] = {}


def lookup_key(key: str) -> SiteKey | None:
    """The site behind a key: process cache, then PostgreSQL, then Redis's copy.

    Redis keeps a copy of every key loaded, so ingest keeps accepting events
    (into the stream) while PostgreSQL is down. A key never seen and PostgreSQL
    down: `StorageUnavailable` (503, retry).
    """
    now = time.monotonic()
    cached = _key_cache.get(key)
    if cached and cached[1] > now:
        return cached[0]
    try:
        site_key = _load_key(key)
    except DatabaseError:
        if cached:
            return cached[0]  # stale but known
        site_key = _key_from_redis(key)
    else:
        if site_key is not None:
            _key_to_redis(key, site_key)
    if len(_key_cache) > 10_000:
        _key_cache.clear()
    # Unknown keys are cached briefly too, so garbage keys cannot hammer the database.
    ttl = settings.INGEST_KEY_CACHE_SECONDS if site_key else 5
    _key_cache[key] = (site_key, now + ttl)
    return site_key


KEY_COPY = "reengage:key:"


def _key_to_redis(key: str, site_key: SiteKey) -> None:
    # Neither the secret key (in the copy's name) nor its siblings (in the value)
    # reach Redis in plain text: the name is the key's digest, the value holds
    # the secret keys encrypted, as in PostgreSQL.
    data = dataclasses.asdict(site_key)
    data["secret_keys_encrypted"] = [encryption.encrypt(k) for k in data.pop("secret_keys")]
    with contextlib.suppress(redis.RedisError):  # the copy is only a fallback
        buffer.client().set(_copy_name(key), json.dumps(data), ex=7 * 86400)


def _key_from_redis(key: str) -> SiteKey | None:
    try:
        raw = buffer.client().get(_copy_name(key))
    except redis.RedisError:
        raw = None
    if raw is None:
        raise buffer.StorageUnavailable("PostgreSQL is down and this key is not cached")
    data = json.loads(raw)
    data["domains"] = tuple(data["domains"])
    try:
        data["secret_keys"] = tuple(
            encryption.decrypt(k) for k in data.pop("secret_keys_encrypted")
        )
    except (KeyError, encryption.InvalidToken):  # an older release's copy, or a retired key
        raise buffer.StorageUnavailable(
            "PostgreSQL is down and this key's copy is unreadable"
        ) from None
    return SiteKey(**data)


def _copy_name(key: str) -> str:
    return KEY_COPY + encryption.digest(key)


def refresh_keys(keys: list[str]) -> None:
    """A site changed (rotation, domains, limits): drop this process's cache and
    rewrite Redis's copies, so ingest knows the site even if PostgreSQL goes down."""
    for key in filter(None, keys):
        _key_cache.pop(key, None)
        with contextlib.suppress(redis.RedisError):
            buffer.client().delete(_copy_name(key))
        with contextlib.suppress(DatabaseError):
            lookup_key(key)


def _load_key(key: str) -> SiteKey | None:
    from django.db.models import Q

    from tracking.models import Site

    if not key or len(key) > 200 or not is_storable(key):
        return None
    # Secret keys are found by their digest (under every configured encryption
    # key, for rows not yet re-encrypted after a rotation), then decrypted once
    # per cache fill.
    digests = encryption.digests(key)
    site = (
        Site.objects.filter(
            Q(write_key=key)
            | Q(secret_key_digest__in=digests)
            | Q(previous_secret_key_digest__in=digests)
        )
        .only(
            "id", "write_key", "secret_key_encrypted", "previous_secret_key_encrypted",
            "previous_secret_key_expires_at", "domains", "anonymize_ip", "retention_days",
            "events_per_minute", "consent_mode",
        )
        .first()
    )  # fmt: skip
    if site is None:
        return None
    secrets = tuple(site.secret_keys())
    if key != site.write_key and key not in secrets:
        return None  # an expired previous secret key
    return SiteKey(
        site_id=site.id,
        trusted=key in secrets,
        domains=tuple(d.lower() for d in site.domains),
        anonymize_ip=site.anonymize_ip,
        retention_days=site.retention_days,
        secret_keys=secrets,
        events_per_minute=site.events_per_minute,
        consent_mode=site.consent_mode,
    )


def clear_key_cache() -> None:
    _key_cache.clear()


# --- request helpers -------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The client's IP: REMOTE_ADDR, or the configured proxy header, never both."""
    header = settings.TRUSTED_PROXY_HEADER
    if header:
        forwarded = request.META.get(header, "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= settings.TRUSTED_PROXY_COUNT:
            return hops[-settings.TRUSTED_PROXY_COUNT]
    return request.META.get("REMOTE_ADDR", "")


def url_host(url: str) -> str | None:
    """The host named in a URL (an Origin, a Referer): "" if none, None if the URL
    cannot be parsed at all (urllib raises on e.g. "http://[")."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return None


def _basic_username(request: HttpRequest) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise IngestError(
            401, "the Authorization header is not valid Basic auth", "Authorization"
        ) from None
    return decoded.split(":", 1)[0]


def _read_body(request: HttpRequest) -> bytes:
    content_type = request.content_type or ""
    if content_type not in JSON_TYPES:
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
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").lower()
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
    events, bots = parse_batch(
        payload, key=key, received_at=received_at, client_ip=ip, single_type=single_type,
        body_size=body_size,
    )  # fmt: skip
    if bots:
        buffer.count_dropped(key.site_id, "bot", bots, received_at.date().isoformat())
    buffer.accept(
        events, site_id=key.site_id, site_limit=key.events_per_minute, client_key=ip or "-"
    )
    return events


def _ingest(request: HttpRequest, single_type: str | None) -> HttpResponse:
    origin = request.META.get("HTTP_ORIGIN", "")
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204), origin)
    if request.method != "POST":
        response = JsonResponse({"success": False, "error": "use POST"}, status=405)
        response["Allow"] = "POST, OPTIONS"
        return response
    try:
        key_name = _basic_username(request)
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
                raise IngestError(
                    403, f"origin {origin} is not in this site's allowed domains", "Origin"
                )
            cors_origin = origin
        record(payload, key=key, ip=client_ip(request), single_type=single_type,
               body_size=len(body))  # fmt: skip
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
