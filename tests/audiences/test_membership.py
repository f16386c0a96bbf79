"""Membership: hashing as Meta and Google document it, expiry, conversion, erasure."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.db import transaction

from campaigns.audiences import membership
from campaigns.models import Audience, AudienceChange, AudienceMember
from tests.audiences.conftest import T0, make_person
from tests.factories import make_site

# Meta, "Customer information parameters" (developers.facebook.com, Conversions API
# parameters, em and ph): "Trim any leading and trailing spaces. Convert all
# characters to lowercase." Input John_Smith@gmail.com → expected SHA-256 below.
# Phone: "Remove symbols, letters, and any leading zeros … must include a country
# code": US phone number (650)555-1212 → 16505551212 → expected SHA-256 below.
META_EMAIL_SHA256 = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
META_PHONE_SHA256 = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
# Google Ads, "Customer Match data formatting" (support.google.com/google-ads/answer/7659867
# and its template): lower-case, remove all extra spaces "before, after or in between"
# email addresses; "Phone numbers must be formatted as E.164 prior to hashing" — the
# template's 1-800-888-8888 is +18008888888. Google publishes no hash, so the expected
# digest is SHA-256 of the documented normal form.
GOOGLE_PHONE_E164 = "+18008888888"


@pytest.fixture
def site(db):
    return make_site()


@pytest.fixture
def audience(site):
    return Audience.objects.create(site=site, name="Browsers", include_hashed_emails=True)


def member(audience, profile) -> AudienceMember:
    return AudienceMember.objects.get(audience=audience, profile=profile)


def test_a_members_email_hash_is_metas_documented_example(audience):
    person = make_person(audience.site, email="  John_Smith@gmail.com ")
    membership.add_members([(audience.id, person.id)], now=T0)
    assert member(audience, person).email_sha256 == META_EMAIL_SHA256
    change = AudienceChange.objects.get(member__profile=person)
    assert change.email_sha256 == META_EMAIL_SHA256


def test_the_python_and_sql_email_normalisations_agree(audience):
    person = make_person(audience.site, email="\tTest.User @Gmail.COM\n")
    membership.add_members([(audience.id, person.id)], now=T0)
    assert membership.normalize_email("\tTest.User @Gmail.COM\n") == "test.user@gmail.com"
    assert member(audience, person).email_sha256 == membership.hash_email("test.user@gmail.com")


def test_a_phone_is_hashed_the_way_meta_and_google_each_document(audience, settings):
    settings.AUDIENCE_PHONE_REGION = "US"
    person = make_person(audience.site, email="a@example.com", phone="(650)555-1212")
    membership.add_members([(audience.id, person.id)], now=T0)
    row = member(audience, person)
    assert row.phone_digits_sha256 == META_PHONE_SHA256
    assert row.phone_sha256 == hashlib.sha256(b"+16505551212").hexdigest()
    change = AudienceChange.objects.get(member=row)
    assert (change.phone_sha256, change.phone_digits_sha256) == (
        row.phone_sha256, row.phone_digits_sha256,
    )  # fmt: skip


def test_a_current_members_phone_hash_survives_an_extension(audience, django_assert_num_queries):
    person = make_person(audience.site, email="a@example.com", phone="+442071838750")
    membership.add_members([(audience.id, person.id)], now=T0)
    with django_assert_num_queries(2):  # the add, then the phone hashes
        membership.add_members([(audience.id, person.id)], now=T0 + timedelta(days=1))
    assert member(audience, person).phone_sha256 == membership.sha256_hex("+442071838750")
    assert AudienceChange.objects.filter(member__profile=person).count() == 1


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("1-800-888-8888", None, GOOGLE_PHONE_E164),  # Google's template, country code first
        ("+44 20 7183 8750", None, "+442071838750"),
        ("0044 20 7183 8750", None, "+442071838750"),
        ("(650)555-1212", "US", "+16505551212"),
        ("030 1234567", "DE", "+49301234567"),
        ("12345", None, None),
        ("call me", "US", None),
    ],
)
def test_phone_numbers_normalise_to_e164_or_not_at_all(raw, region, e164):
    assert membership.normalize_phone(raw, region) == e164


@pytest.mark.parametrize(
    "who",
    [
        {"verified": False},
        {"advertising": False},
        {"advertising": None},
        {"gpc": True},
    ],
    ids=["unverified email", "refused advertising", "no advertising consent", "sent GPC"],
)
def test_no_hash_leaves_for_a_person_who_may_not_be_matched(audience, who):
    person = make_person(audience.site, email="x@example.com", phone="+442071838750", **who)
    membership.add_members([(audience.id, person.id)], now=T0)
    row = member(audience, person)
    assert (row.email_sha256, row.phone_sha256, row.phone_digits_sha256) == ("", "", "")


def test_no_hash_leaves_an_audience_that_does_not_include_them(site):
    audience = Audience.objects.create(site=site, name="IDs only", include_hashed_emails=False)
    person = make_person(site, email="x@example.com", phone="+442071838750")
    membership.add_members([(audience.id, person.id)], now=T0)
    assert member(audience, person).email_sha256 == ""
    assert member(audience, person).phone_sha256 == ""


def test_adding_a_current_member_again_extends_expiry_without_a_second_change(audience):
    person = make_person(audience.site)
    assert membership.add_members([(audience.id, person.id)], now=T0) == 1
    later = T0 + timedelta(days=10)
    assert membership.add_members([(audience.id, person.id)] * 2, now=later) == 0
    assert member(audience, person).expires_at == later + timedelta(days=30)
    assert AudienceChange.objects.filter(member__profile=person).count() == 1


def test_expiry_removes_members_and_records_each_removal_once(audience):
    early, late = make_person(audience.site), make_person(audience.site)
    membership.add_members([(audience.id, early.id)], now=T0)
    membership.add_members([(audience.id, late.id)], now=T0 + timedelta(days=5))
    with transaction.atomic():
        assert membership.expire_members(now=T0 + timedelta(days=31)) == 1
        assert membership.expire_members(now=T0 + timedelta(days=32)) == 0
    gone = member(audience, early)
    assert gone.removal_reason == "expired" and gone.removed_at is not None
    assert member(audience, late).removed_at is None
    removal = AudienceChange.objects.get(action="remove")
    assert (removal.member_id, removal.reason) == (gone.id, "expired")
    assert removal.anonymous_ids == list(early.visitors.values_list("anonymous_id", flat=True))


def test_conversion_removes_the_person_and_emits_a_removal(audience):
    buyer, browser = make_person(audience.site), make_person(audience.site)
    membership.add_members([(audience.id, buyer.id), (audience.id, browser.id)], now=T0)
    assert membership.remove_profiles([buyer.id], now=T0, reason="converted") == 1
    assert member(audience, buyer).removal_reason == "converted"
    assert member(audience, browser).removed_at is None
    assert list(
        AudienceChange.objects.filter(action="remove").values_list("reason", flat=True)
    ) == ["converted"]


def test_an_erased_person_leaves_every_audience(site, audience):
    others = [Audience.objects.create(site=site, name=f"A{i}") for i in range(2)]
    person, bystander = make_person(site, email="e@example.com"), make_person(site)
    pairs = [(a.id, p.id) for a in [audience, *others] for p in (person, bystander)]
    membership.add_members(pairs, now=T0)
    assert membership.remove_profiles([person.id], now=T0, reason="erased") == 3
    assert not AudienceMember.objects.filter(profile=person, removed_at=None).exists()
    assert AudienceMember.objects.filter(profile=bystander, removed_at=None).count() == 3
    removals = AudienceChange.objects.filter(action="remove", member__profile=person)
    assert sorted(removals.values_list("audience_id", flat=True)) == sorted(
        a.id for a in [audience, *others]
    )
    # The removal carries the hash, so a destination can remove the person too;
    # the member rows forget it.
    assert removals.get(audience=audience).email_sha256 == membership.hash_email("e@example.com")
    assert set(
        AudienceMember.objects.filter(profile=person).values_list("email_sha256", flat=True)
    ) == {""}


def test_a_removed_member_who_returns_gets_a_new_add_change(audience):
    person = make_person(audience.site)
    membership.add_members([(audience.id, person.id)], now=T0)
    membership.remove_profiles([person.id], now=T0, reason="converted")
    later = T0 + timedelta(days=3)
    assert membership.add_members([(audience.id, person.id)], now=later) == 1
    row = member(audience, person)
    assert (row.removed_at, row.added_at, row.expires_at) == (
        None, later, later + timedelta(days=30),
    )  # fmt: skip
    assert list(
        AudienceChange.objects.filter(member=row).order_by("id").values_list("action", flat=True)
    ) == ["add", "remove", "add"]


def test_adding_many_people_without_phones_takes_one_query(audience, django_assert_num_queries):
    people = [make_person(audience.site, email=f"p{i}@example.com") for i in range(50)]
    with django_assert_num_queries(1):
        membership.add_members([(audience.id, p.id) for p in people], now=T0)
    assert AudienceChange.objects.filter(audience=audience).count() == 50
