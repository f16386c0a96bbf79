"""Security headers and the Content-Security-Policy, without breaking cross-origin ingest."""

import base64
import json
from html.parser import HTMLParser

import pytest

from tests.factories import make_site, segment_event
from tracking.keys import clear_key_cache

pytestmark = pytest.mark.django_db


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class InlineCode(HTMLParser):
    """Collects what a strict script-src would block: inline scripts and on* handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in attributes:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")
        if tag == "script" and "src" not in attributes:
            # JSON data blocks (json_script) are not executed, so CSP allows them.
            self._in_script = attributes.get("type") != "application/json"
        if tag == "a" and (attributes.get("href") or "").lower().startswith("javascript:"):
            self.found.append("javascript: link")

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append(f"<script>{data.strip()[:60]}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def test_the_admin_login_page_carries_a_strict_script_policy(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    directives = policy(response)
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert directives["base-uri"] == ["'none'"]
    assert inline_code(response.text) == []


def test_security_headers_are_set(client):
    response = client.get("/admin/login/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/tracking/site/",
        "/admin/tracking/site/add/",
        "/admin/tracking/site/{site}/change/",
        "/admin/tracking/profile/",
        "/admin/auth/user/",
        "/admin/auth/group/{marketers}/change/",
        "/admin/otp_totp/totpdevice/",
        "/admin/otp_totp/totpdevice/add/",
        "/admin/axes/accessattempt/",
        "/admin/two-factor/",
    ],
)
def test_admin_pages_render_under_the_policy_without_inline_scripts(admin_client, path):
    from django.contrib.auth.models import Group

    site = make_site()
    url = path.format(site=site.id, marketers=Group.objects.get(name="Marketers").id)
    response = admin_client.get(url)
    assert response.status_code == 200, url
    assert "Content-Security-Policy" in response
    assert inline_code(response.text) == []


def test_the_inline_code_check_finds_inline_scripts_and_handlers():
    html = '<script>alert(1)</script><img onerror="x()"><script src="/a.js"></script>'
    assert inline_code(html) == ["<script>alert(1)", "<img onerror=…>"]


def test_the_demo_store_is_outside_the_policy(client):
    # The demo store imitates a customer's site, whose loader snippet is inline.
    assert "Content-Security-Policy" not in client.get("/demo/anything")
    assert "Content-Security-Policy" in client.get("/not-the-demo")


@pytest.fixture
def site(redis_client):
    clear_key_cache()
    return make_site(domains=["shop.test"])


def test_ingest_keeps_answering_cross_origin_preflights(client, site):
    response = client.options(
        "/v1/batch",
        HTTP_ORIGIN="https://shop.test",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "https://shop.test"
    assert response["Access-Control-Allow-Headers"] == "content-type"


def test_ingest_keeps_its_cors_answer_for_an_allowed_origin(client, site):
    auth = "Basic " + base64.b64encode(f"{site.write_key}:".encode()).decode()
    response = client.post(
        "/v1/batch",
        json.dumps({"batch": [segment_event()]}),
        content_type="text/plain",
        HTTP_ORIGIN="https://shop.test",
        HTTP_AUTHORIZATION=auth,
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://shop.test"


def test_the_snippet_settings_stay_readable_from_any_origin(client, site):
    response = client.get(f"/v1/settings/{site.write_key}", HTTP_ORIGIN="https://shop.test")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"


def test_every_registered_admin_list_and_add_page_has_no_inline_scripts(admin_client):
    """A sweep over whatever admins the apps register, so new ones are checked too."""
    from django.contrib import admin

    checked = 0
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for url in (base, base + "add/"):
            response = admin_client.get(url)
            if response.status_code == 403:  # e.g. no add permission for anyone
                continue
            assert response.status_code == 200, url
            assert inline_code(response.text) == [], url
            checked += 1
    assert checked >= 10
