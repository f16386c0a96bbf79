"""Suppressions by hand, as a marketer: add with a reason, lift with a reason, and
never lift what only the person may undo (their unsubscribe or spam complaint)."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Group
from django.utils import timezone

from campaigns.email.unsubscribe import suppress
from campaigns.models import Suppression
from campaigns.models.email import email_hash
from tests.factories import make_site

pytestmark = pytest.mark.django_db

URL = "/admin/campaigns/suppression/"


@pytest.fixture
def marketer(django_user_model, client):
    user = django_user_model.objects.create_user("mia", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    return client


@pytest.fixture
def site():
    return make_site()


def suppression_of(site, address: str, reason: str) -> Suppression:
    suppress(site.id, address, reason, now=timezone.now(), note="seeded")
    return Suppression.objects.get(site=site, email_hash=email_hash(address))


def test_a_marketer_adds_an_address_by_hand_with_a_reason(marketer, site):
    response = marketer.post(f"{URL}add/", {"site": site.id, "email": " Ann@Example.com ",
                                            "note": "asked us by phone"})  # fmt: skip
    assert response.status_code == 302
    added = Suppression.objects.get(site=site)
    assert (added.email, added.reason, added.note) == (
        "ann@example.com", Suppression.Reason.MANUAL, "asked us by phone")  # fmt: skip
    assert added.email_hash == email_hash("ann@example.com")


def test_adding_needs_an_address_and_a_reason(marketer, site):
    response = marketer.post(f"{URL}add/", {"site": site.id, "email": "", "note": ""})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"email", "note"}
    assert not Suppression.objects.exists()


def test_adding_an_address_twice_says_since_when_it_is_suppressed(marketer, site):
    suppression_of(site, "ann@example.com", Suppression.Reason.BOUNCED)
    response = marketer.post(f"{URL}add/", {"site": site.id, "email": "ANN@example.com",
                                            "note": "again"})  # fmt: skip
    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["email"]
    assert "ANN@example.com is already suppressed on Shop (Hard bounce, since" in message
    assert Suppression.objects.count() == 1


def test_only_the_note_changes_afterwards(marketer, site):
    suppression = suppression_of(site, "ann@example.com", Suppression.Reason.MANUAL)
    page = marketer.get(f"{URL}{suppression.id}/change/").text
    assert 'name="note"' in page
    assert 'name="email"' not in page
    assert 'name="reason"' not in page


def test_a_marketer_lifts_a_bounce_with_a_reason_kept_in_the_history(marketer, site):
    suppression = suppression_of(site, "ann@example.com", Suppression.Reason.BOUNCED)
    assert f"{URL}{suppression.id}/remove/" in marketer.get(f"{URL}{suppression.id}/change/").text

    refused = marketer.post(f"{URL}{suppression.id}/remove/", {"reason": ""})
    assert refused.status_code == 200
    assert "Say why the address may be emailed again" in refused.text
    assert Suppression.objects.filter(pk=suppression.pk).exists()

    response = marketer.post(f"{URL}{suppression.id}/remove/",
                             {"reason": "the mailbox works again"})  # fmt: skip
    assert response.status_code == 302
    assert not Suppression.objects.filter(pk=suppression.pk).exists()
    entry = LogEntry.objects.get(action_flag=DELETION)
    assert entry.change_message == "Removed by hand: the mailbox works again"
    assert entry.user.username == "mia"


@pytest.mark.parametrize("reason", ["unsubscribed", "complained", "erased"])
def test_what_only_the_person_may_undo_cannot_be_lifted(marketer, site, reason):
    suppression = suppression_of(site, "ann@example.com", reason)
    assert (
        f"{URL}{suppression.id}/remove/" not in marketer.get(f"{URL}{suppression.id}/change/").text
    )

    response = marketer.post(f"{URL}{suppression.id}/remove/", {"reason": "they said so"},
                             follow=True)  # fmt: skip

    assert "cannot be removed by hand" in response.text
    assert Suppression.objects.filter(pk=suppression.pk).exists()


def test_there_is_no_bare_delete(admin_client, site):
    suppression = suppression_of(site, "ann@example.com", Suppression.Reason.MANUAL)
    assert admin_client.get(f"{URL}{suppression.id}/delete/").status_code == 403
    assert "delete_selected" not in admin_client.get(URL).text
