"""/demo/ mints valid user_hashes for its sign-up form: it is served only with DEBUG or
an explicit DEMO_ENABLED, never by a production instance by default."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings
from django.urls import clear_url_caches

ROOT = Path(__file__).resolve().parent.parent


def reload_urls() -> None:
    import reengage.urls

    importlib.reload(reengage.urls)
    clear_url_caches()


@pytest.fixture
def urls_reloaded():
    yield
    reload_urls()  # back to the test settings' URLs


@pytest.mark.django_db
def test_demo_pages_are_not_served_when_demo_is_disabled(client, urls_reloaded):
    with override_settings(DEMO_ENABLED=False):
        reload_urls()
        assert client.get("/demo/").status_code == 404
        assert client.post("/demo/signup/", {"email": "a@example.com"}).status_code == 404
        assert client.get("/healthz").status_code in (200, 503)  # the rest still served


@pytest.mark.parametrize(
    ("env", "enabled"),
    [({"DEBUG": "0"}, "False"), ({"DEBUG": "0", "DEMO_ENABLED": "1"}, "True"),
     ({"DEBUG": "1"}, "True"), ({"DEBUG": "1", "DEMO_ENABLED": "0"}, "False")],
)  # fmt: skip
def test_demo_enabled_defaults_to_debug(env, enabled):
    child = {
        **{k: v for k, v in os.environ.items() if k not in ("DEBUG", "DEMO_ENABLED")},
        "SECRET_KEY": "x" * 60, "FIELD_ENCRYPTION_KEY": "y" * 40,
        "ANYMAIL_WEBHOOK_SECRET": "u:p", **env,
    }  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; import django; "
         "django.setup(); print(settings.DEMO_ENABLED)"],
        cwd=ROOT, env={**child, "DJANGO_SETTINGS_MODULE": "reengage.settings"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1:] == [enabled], out.stderr[-2000:]
