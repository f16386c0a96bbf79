"""The official Node.js SDKs, unchanged: @segment/analytics-node and
@rudderstack/rudder-sdk-node (its defaults: gzip, a body axios labels as a form).

Each setup is copied from the site's install page and run by node against
live_server, with the pinned packages from tests/sdk/ on NODE_PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import redis as redis_lib
from django.conf import settings

from tests.factories import make_site
from tests.sdk_packages import node_modules
from tests.tracking.conftest import copied_setup
from tracking import buffer
from tracking.flush import flush_until_empty
from tracking.install import EXAMPLE_EMAIL, SECRET_KEY_VARIABLE
from tracking.keys import clear_key_cache
from tracking.models import Event, Profile
from tracking.trust import identity_proof

pytestmark = pytest.mark.django_db(transaction=True)

LIBRARIES = {"segment-node": "@segment/analytics-node", "rudderstack-node": "analytics-node"}


@pytest.fixture(scope="module")
def packages():
    modules = node_modules()
    if shutil.which("node") is None:
        pytest.fail("node is missing (apt-get install nodejs; .ci/run does)")
    return modules


@pytest.fixture
def site(redis_client, live_server, settings):
    clear_key_cache()
    settings.PUBLIC_URL = live_server.url
    return make_site(domains=["shop.example.com"])


def run_node(code: str, directory, packages, key: str) -> str:
    path = directory / "send.js"
    path.write_text(code)
    env = {"PATH": os.environ["PATH"], "HOME": str(directory), "NODE_PATH": str(packages),
           SECRET_KEY_VARIABLE: key}  # fmt: skip
    done = subprocess.run(["node", str(path)], env=env, cwd=directory, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"node failed:\n{done.stdout}\n{done.stderr}"
    assert "sent" in done.stdout, done.stdout
    return done.stdout


def assert_landed(site, key: str) -> list[Event]:
    flush_until_empty()
    events = list(Event.objects.filter(site=site))
    assert sorted((e.type, e.name) for e in events) == [
        ("identify", ""), ("page", "Order confirmation"), ("track", "Order Completed"),
    ], events  # fmt: skip
    track = next(e for e in events if e.type == "track")
    assert track.message_id == "order-1001-completed"
    assert track.properties == {"order_id": "1001", "revenue": 42.5, "currency": "EUR"}
    assert track.context["library"]["name"] == LIBRARIES[key]
    return events


@pytest.mark.parametrize("key", list(LIBRARIES))
def test_identify_page_and_track_land_from_the_sdk_with_the_secret_key(
    admin_client, site, packages, tmp_path, key
):
    run_node(copied_setup(admin_client, site, key), tmp_path, packages, site.secret_key)
    assert_landed(site, key)
    person = Profile.objects.get(site=site, user_id="user-42")
    assert (person.email, person.email_verified) == (EXAMPLE_EMAIL, True)


@pytest.mark.parametrize("key", list(LIBRARIES))
def test_a_batch_retried_after_a_503_is_stored_once(
    admin_client, site, packages, tmp_path, key, lost_acknowledgement
):
    run_node(copied_setup(admin_client, site, key), tmp_path, packages, site.secret_key)
    assert lost_acknowledgement.count == 0, "no request was answered 503"
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    buffered = sum(int(fields[b"n"]) for _, fields in client.xrange(buffer.STREAM))
    assert buffered > 3, "the SDK did not resend the batch answered 503"
    events = assert_landed(site, key)
    assert len({e.message_id for e in events}) == len(events) == 3


@pytest.mark.parametrize("key", list(LIBRARIES))
def test_an_identify_with_the_write_key_counts_the_email_as_verified_only_with_user_hash(
    admin_client, site, packages, tmp_path, key
):
    # A process that holds only the public write key (a kiosk, a desktop app) must
    # prove the email as a page does: with the user_hash the shop's backend computed.
    proof = identity_proof(site.secret_key, "user-42", EXAMPLE_EMAIL)
    setup = copied_setup(admin_client, site, key)
    assert setup.count("first_name: 'Ada'") == 1
    proved = setup.replace("first_name: 'Ada'", f"first_name: 'Ada', user_hash: '{proof}'")
    run_node(proved, tmp_path, packages, site.write_key)
    flush_until_empty()
    person = Profile.objects.get(site=site, user_id="user-42")
    assert (person.email, person.email_verified) == (EXAMPLE_EMAIL, True)
    assert "user_hash" not in str(list(Event.objects.filter(site=site).values("context")))


@pytest.mark.parametrize("key", list(LIBRARIES))
def test_an_identify_with_the_write_key_and_no_proof_leaves_the_email_unverified(
    admin_client, site, packages, tmp_path, key
):
    run_node(copied_setup(admin_client, site, key), tmp_path, packages, site.write_key)
    flush_until_empty()
    person = Profile.objects.get(site=site, user_id="user-42")
    assert person.email_verified is False
