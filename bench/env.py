"""Production-like settings for a benchmark script: DEBUG off and throwaway secrets, so
it measures what a deployment runs. Call before `django.setup()`; what the caller's
environment already sets wins."""

from __future__ import annotations

import os


def production_like(**overrides: str) -> None:
    defaults = {
        "DJANGO_SETTINGS_MODULE": "reengage.settings",
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + "x" * 60,
        "FIELD_ENCRYPTION_KEY": "bench-" + "y" * 60,
        "SECURE_SSL_REDIRECT": "0",
        "ANYMAIL_WEBHOOK_SECRET": "bench:bench",  # required with DEBUG off
    }
    for name, value in {**defaults, **overrides}.items():
        os.environ.setdefault(name, value)
