"""The install page's server-side examples are right: each is copied from the page and
run for real (bash + curl + openssl, Python, Node, PHP where installed) against a live
server. Its events must land and the user_hash it prints must pass ingest's check."""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.factories import make_site
from tracking import flush
from tracking.install import EXAMPLE_EMAIL, EXAMPLE_USER_ID, SECRET_KEY_VARIABLE
from tracking.models import Event, Profile, Visitor

pytestmark = pytest.mark.django_db(transaction=True)

RUNNERS = {
    "curl": ("bash", "example.sh"),
    "python": (sys.executable, "example.py"),
    "node": ("node", "example.js"),
    "php": ("php", "example.php"),
}


@pytest.fixture
def site(redis_client, live_server, settings):
    settings.PUBLIC_URL = live_server.url
    return make_site()


def copied_example(admin_client, site, key: str) -> str:
    """The example's text as the page's Copy button takes it (the <pre>'s text)."""
    page = admin_client.get(f"/admin/tracking/site/{site.id}/install/").text
    match = re.search(rf'<pre id="copy-{key}"><code>(.*?)</code></pre>', page, re.S)
    assert match, f"no {key} example on the install page"
    return html.unescape(match.group(1))


def run_example(key: str, code: str, directory, secret_key: str) -> str:
    runner, filename = RUNNERS[key]
    if shutil.which(runner) is None:
        pytest.skip(f"{runner} is not installed")
    path = directory / filename
    path.write_text(code)
    env = {"PATH": os.environ["PATH"], "HOME": str(directory), SECRET_KEY_VARIABLE: secret_key}
    done = subprocess.run([runner, str(path)], env=env, cwd=directory, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, f"{key} example failed:\n{done.stdout}\n{done.stderr}"
    found = re.search(r"user_hash:? ([0-9a-f]{64})$", done.stdout, re.M)
    assert found, f"{key} example printed no user_hash:\n{done.stdout}"
    return found.group(1)


@pytest.mark.parametrize("key", list(RUNNERS))
def test_the_example_sends_events_that_land(key, site, admin_client, client, tmp_path):
    code = copied_example(admin_client, site, key)
    assert site.secret_key not in code
    assert f"{site.id}" not in re.findall(r"/v1/\w+", code)  # endpoints, not ids

    printed_hash = run_example(key, code, tmp_path, site.secret_key)
    flush.flush_once()

    events = {e.name or e.type: e for e in Event.objects.filter(site=site)}
    assert set(events) == {"identify", "Order Completed"}
    assert events["Order Completed"].properties == {
        "order_id": "1001", "revenue": 42.5, "currency": "EUR"}  # fmt: skip
    person = Profile.objects.get(site=site, user_id="user-42")
    assert person.email.lower() == EXAMPLE_EMAIL.lower()
    assert person.email_verified is True
    site.refresh_from_db()
    assert site.last_event_at is not None

    # The user_hash it printed is the one a page passes to the browser's identify: the
    # proof bound to the userId and email (tracking.trust). Ingest accepts it (a wrong
    # one is refused with 400), and the browser joins the person, email verified.
    assert printed_hash == site.identity_proof(EXAMPLE_USER_ID, EXAMPLE_EMAIL)
    browser_identify = {"anonymousId": "browser-1", "userId": EXAMPLE_USER_ID,
                        "traits": {"email": EXAMPLE_EMAIL, "user_hash": printed_hash}}  # fmt: skip
    wrong = {"anonymousId": "browser-2", "userId": EXAMPLE_USER_ID,
             "traits": {"email": EXAMPLE_EMAIL, "user_hash": "0" * 64}}  # fmt: skip
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(
        f"{site.write_key}:".encode()).decode()}  # fmt: skip
    assert client.post("/v1/identify", browser_identify, content_type="application/json",
                       **auth).status_code == 200  # fmt: skip
    refused = client.post("/v1/identify", wrong, content_type="application/json", **auth)
    assert (refused.status_code, refused.json()["field"]) == (400, "body.traits.user_hash")
    flush.flush_once()
    joined = Visitor.objects.get(site=site, anonymous_id="browser-1").profile
    assert (joined.id, joined.email_verified, joined.user_id_proven) == (person.id, True, True)
