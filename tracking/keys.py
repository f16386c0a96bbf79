"""Who is calling: the site behind a key (cached per process, copied to Redis),
the client's IP and the host of an Origin, and the Basic-auth username.

Ingest, the pixel, the audience API and the admin login throttle all read these.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import time
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest

from reengage import encryption
from tracking import buffer
from tracking.ingest import IngestError, SiteKey, is_storable

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


def basic_username(request: HttpRequest) -> str:
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
