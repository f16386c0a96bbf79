"""The ad-platform destinations in the admin: credentials, send test, status, inbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User

from campaigns.audiences import membership
from campaigns.models import Audience, PlatformBatch, PlatformDestination, PlatformInboxEntry
from tests.audiences.conftest import META_TOKEN, deliver, give_browser, make_person
from tests.audiences.platform_standins import MetaStandIn
from tests.factories import make_site

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


@pytest.fixture
def audience():
    return Audience.objects.create(site=make_site(), name="Lapsed", include_hashed_emails=True)


@pytest.fixture
def meta(settings):
    stand_in = MetaStandIn(token=META_TOKEN)
    settings.META_GRAPH_URL = stand_in.url
    yield stand_in
    stand_in.close()


def form(audience, **fields) -> dict:
    data = {"audience": audience.id, "name": "Meta pixel", "kind": "meta_capi",
            "enabled": "on", "pixel_id": "1234567890", "google_account_type": "GOOGLE_ADS",
            "credential_input": ""}  # fmt: skip
    data.update(fields)
    return data


def test_credentials_are_stored_encrypted_and_never_shown_again(admin_client, audience):
    response = admin_client.post("/admin/campaigns/platformdestination/add/",
                                 form(audience, credential_input=META_TOKEN), follow=True)  # fmt: skip
    assert response.status_code == 200
    destination = PlatformDestination.objects.get()
    assert destination.credential == META_TOKEN
    assert META_TOKEN not in destination.credential_encrypted
    page = response.content.decode()
    assert "credentials saved (EAAB…6789)" in page and META_TOKEN not in page
    change = admin_client.get(f"/admin/campaigns/platformdestination/{destination.id}/change/")
    assert META_TOKEN not in change.content.decode()
    # Saving again with the field blank keeps the stored credentials.
    admin_client.post(f"/admin/campaigns/platformdestination/{destination.id}/change/",
                      form(audience, name="renamed"))  # fmt: skip
    destination.refresh_from_db()
    assert destination.name == "renamed" and destination.credential == META_TOKEN


def test_a_broken_service_account_key_is_a_form_error(admin_client, audience):
    response = admin_client.post("/admin/campaigns/platformdestination/add/", form(
        audience, kind="google_audience", google_operating_account_id="123",
        google_audience_id="456", google_terms_accepted="on",
        credential_input='{"type": "service_account"}'))  # fmt: skip
    assert response.status_code == 200
    assert "Service-account key: the key file has no client_email, private_key" in (
        response.content.decode()
    )
    assert not PlatformDestination.objects.exists()


def test_a_customer_list_for_an_audience_without_hashed_emails_is_a_form_error(admin_client):
    plain = Audience.objects.create(site=make_site(), name="Cookies only")
    response = admin_client.post("/admin/campaigns/platformdestination/add/",
                                 form(plain, kind="meta_audience", custom_audience_id="99"))  # fmt: skip
    assert response.status_code == 200
    assert "customer lists take hashed emails" in response.content.decode()


def test_send_test_reports_success_and_metas_own_error(admin_client, audience, meta):
    destination = PlatformDestination(audience=audience, name="Pixel", kind="meta_capi",
                                      pixel_id="1234567890")  # fmt: skip
    destination.credential = META_TOKEN
    destination.save()
    url = "/admin/campaigns/platformdestination/"
    action = {"action": "send_test", "_selected_action": [destination.id]}
    page = admin_client.post(url, action, follow=True).content.decode()
    assert "Pixel: test OK" in page

    meta.fail_next(1, 400, body=MetaStandIn.error("Invalid OAuth access token.", code=190))
    page = admin_client.post(url, action, follow=True).content.decode()
    assert (
        "Pixel: test failed (HTTP 400): Invalid OAuth access token. (OAuthException, 190)" in page
    )
    listing = admin_client.get(url).content.decode()
    assert "Invalid OAuth access token." in listing


def test_the_status_shows_backlog_dead_batches_and_the_last_error(admin_client, audience, meta):
    destination = PlatformDestination(audience=audience, name="Pixel", kind="meta_capi",
                                      pixel_id="1234567890")  # fmt: skip
    destination.credential = META_TOKEN
    destination.save()
    person = make_person(audience.site)
    give_browser(person, fbp="fb.1.1764000000000.1")
    membership.add_members([(audience.id, person.id)], now=NOW)
    listing = admin_client.get("/admin/campaigns/platformdestination/").content.decode()
    assert "1 not batched, 0 batches pending" in listing

    meta.fail_next(1, 400)
    deliver(NOW)
    listing = admin_client.get("/admin/campaigns/platformdestination/").content.decode()
    assert "0 not batched, 0 batches pending" in listing
    assert f"destination__id__exact={destination.id}&status__exact=dead" in listing
    assert "Invalid parameter" in listing
    batch = PlatformBatch.objects.get()
    for url in [f"/admin/campaigns/platformdestination/{destination.id}/change/",
                "/admin/campaigns/platformbatch/",
                f"/admin/campaigns/platformbatch/{batch.id}/change/",
                "/admin/campaigns/platformdestination/add/"]:  # fmt: skip
        assert admin_client.get(url).status_code == 200, url
    change = admin_client.get(f"/admin/campaigns/platformdestination/{destination.id}/change/")
    assert "Dead (gave up)" in change.content.decode()

    page = admin_client.post("/admin/campaigns/platformbatch/",
                             {"action": "retry", "_selected_action": [batch.id]}, follow=True)  # fmt: skip
    assert "1 dead batches will be retried." in page.content.decode()


def test_the_dev_inbox_page_shows_the_payload_with_its_hashes(admin_client, audience):
    destination = PlatformDestination.objects.create(
        audience=audience, name="list", kind="meta_audience", custom_audience_id="77"
    )
    person = make_person(audience.site, email="inbox@example.com")
    membership.add_members([(audience.id, person.id)], now=NOW)
    deliver(NOW)
    entry = PlatformInboxEntry.objects.get(destination=destination)
    page = admin_client.get("/admin/campaigns/platforminboxentry/").content.decode()
    assert "/v25.0/77/users" in page
    detail = admin_client.get(f"/admin/campaigns/platforminboxentry/{entry.id}/change/")
    assert membership.hash_email("inbox@example.com") in detail.content.decode()
    assert json.dumps(entry.payload)  # stored as JSON, shown pretty-printed
