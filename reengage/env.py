"""Tiny helpers that read settings from the environment.

Every helper raises :class:`ConfigError` naming the variable and what a good
value looks like, so a typo in ``.env`` is one readable line, not a traceback.
"""

from __future__ import annotations

import os
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
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off"
    )


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
