"""Tiny helpers that read settings from the environment.

Every helper raises :class:`ConfigError` naming the variable and what a good
value looks like, so a typo in ``.env`` is one readable line, not a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured


class ConfigError(ImproperlyConfigured):
    """A malformed environment variable."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return _parse_bool(name, raw)


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of: {', '.join(choices)}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def env_prefixed(prefix: str) -> dict[str, str]:
    """Every variable starting with `prefix`, keyed by the rest of its name."""
    return {
        key.removeprefix(prefix): value
        for key, value in os.environ.items()
        if key.startswith(prefix)
    }


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_config(name: str = "DATABASE_URL") -> dict:
    """Parse a PostgreSQL URL into Django's DATABASES entry."""
    import dj_database_url

    raw = os.environ.get(name, "")
    example = "postgres://USER:PASSWORD@HOST:5432/DBNAME"
    if not raw:
        raise ConfigError(f"{name} is not set; set it to {example}")
    scheme = urlsplit(raw).scheme
    if scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ConfigError(
            f"{name} is malformed: expected a PostgreSQL URL like {example}, "
            f"got scheme {scheme or '(none)'!r}"
        )
    try:
        config = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
        # urlsplit only validates the port lazily.
        _ = urlsplit(raw).port
    except ValueError as exc:
        raise ConfigError(f"{name} is malformed ({exc}); expected {example}") from None
    if not config.get("NAME"):
        raise ConfigError(f"{name} is malformed: it names no database; expected {example}")
    return config


def redis_url(name: str = "REDIS_URL") -> str:
    raw = os.environ.get(name, "")
    example = "redis://HOST:6379/0"
    if not raw:
        raise ConfigError(f"{name} is not set; set it to {example}")
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(
            f"{name} is malformed: expected a Redis URL like {example}, "
            f"got scheme {parts.scheme or '(none)'!r}"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"{name} is malformed ({exc}); expected {example}") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{name} is malformed: it names no host; expected {example}")
    return raw


# --- Anymail's settings, typed ------------------------------------------------------
# Anymail reads ANYMAIL["<NAME>"] and expects Python values: a number for
# REQUESTS_TIMEOUT, booleans, dicts. The environment only holds strings, so the
# settings that Anymail (15.x: anymail/backends/*.py and anymail/webhooks/*.py,
# every get_anymail_setting call with a non-string default) reads as another
# type are listed here; every other ANYMAIL_* variable (keys, tokens, URLs,
# names) stays a string.
ANYMAIL_BOOLEANS = frozenset(
    {
        "IGNORE_UNSUPPORTED_FEATURES",
        "IGNORE_RECIPIENT_STATUS",
        "DEBUG_API_REQUESTS",
        "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS",
        "BREVO_WORKAROUND_DISPLAY_NAME_BUGS",
        "BREVO_PREVENT_HEADER_ENCODING_BUGS",
        "POSTMARK_USE_BULK_API",
        "POSTMARK_GENERATE_MESSAGE_ID",
        "RESEND_VERIFY_ATTACHMENT_EXTENSIONS",
        "SENDGRID_GENERATE_MESSAGE_ID",
        "SPARKPOST_TRACK_INITIAL_OPEN_AS_OPENED",
        "UNISENDER_GO_GENERATE_MESSAGE_ID",
        "UNISENDER_GO_WORKAROUND_DISPLAY_NAME_BUGS",
    }
)
ANYMAIL_INTEGERS = frozenset(
    {
        "AMAZON_SES_DOWNLOAD_CHUNK_SIZE",
        "MAILTRAP_DOWNLOAD_CHUNK_SIZE",
        "RESEND_DOWNLOAD_CHUNK_SIZE",
    }
)
# JSON objects: send defaults (global and per ESP, e.g. ANYMAIL_POSTMARK_SEND_DEFAULTS)
# and the boto3 session/client parameters for Amazon SES.
ANYMAIL_JSON_OBJECTS = frozenset({"AMAZON_SES_SESSION_PARAMS", "AMAZON_SES_CLIENT_PARAMS"})
ANYMAIL_JSON_OBJECT_SUFFIX = "SEND_DEFAULTS"


def anymail_settings(environ: Mapping[str, str] | None = None) -> dict:
    """Every ANYMAIL_<NAME> variable as ANYMAIL["<NAME>"], typed as Anymail reads it.

    ANYMAIL_WEBHOOK_SECRET is left as the raw string (settings.py splits it for
    rotation); ANYMAIL_REQUESTS_TIMEOUT is seconds (``30``) or ``connect,read``
    (``3.05,27``), as for the requests library.
    """
    environ = os.environ if environ is None else environ
    settings: dict = {}
    for key, raw in environ.items():
        if not key.startswith("ANYMAIL_"):
            continue
        name = key.removeprefix("ANYMAIL_")
        if name in ANYMAIL_BOOLEANS:
            settings[name] = _parse_bool(key, raw)
        elif name in ANYMAIL_INTEGERS:
            settings[name] = _parse_int(key, raw, minimum=1)
        elif name == "REQUESTS_TIMEOUT":
            settings[name] = _parse_timeout(key, raw)
        elif name in ANYMAIL_JSON_OBJECTS or name.endswith(ANYMAIL_JSON_OBJECT_SUFFIX):
            settings[name] = _parse_json_object(key, raw)
        else:
            settings[name] = raw
    return settings


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off"
    )


def _parse_int(name: str, raw: str, *, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _parse_timeout(name: str, raw: str) -> float | tuple[float, float]:
    parts = [part.strip() for part in raw.split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(0 < v < float("inf") for v in values):
        raise ConfigError(
            f"{name}={raw!r} is not a timeout; use seconds (30) or connect,read seconds (3.05,27)"
        )
    return values[0] if len(values) == 1 else (values[0], values[1])


def _parse_json_object(name: str, raw: str) -> dict:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{name} is not valid JSON ({exc}); expected an object like {{}}"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f'{name} must be a JSON object like {{"key": "value"}}, not {type(value).__name__}'
        )
    return value
