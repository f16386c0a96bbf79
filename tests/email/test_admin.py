"""The email admin: validation errors, preview, send a test, dev mailbox, code import."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import DevMail, EmailTemplate, PromoCode, PromoPool
from tests.email.conftest import make_campaign, make_profile

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(client):
    user = get_user_model().objects.create_superuser("mia", "mia@shop.test", "pw")
    client.force_login(user)
    return client


def test_saving_a_template_with_a_refused_tag_shows_a_form_error(marketer):
    campaign, _, _ = make_campaign()
    response = marketer.post(
        "/admin/campaigns/emailtemplate/add/",
        {"site": campaign.site_id, "name": "Bad", "subject": "Hi",
         "html": "<p>{% include 'secrets.html' %}</p>", "text": "", "preheader": ""},
    )  # fmt: skip

    assert response.status_code == 200
    assert "the tag {% include %} is not allowed" in response.content.decode()
    assert not EmailTemplate.objects.filter(name="Bad").exists()


def test_preview_renders_sample_data_and_a_real_visitor(marketer):
    campaign, _, template = make_campaign()
    make_profile(campaign.site, "grace@example.com", traits={"first_name": "Grace"})
    url = f"/admin/campaigns/emailtemplate/{template.pk}/preview/"

    sample = marketer.get(url).content.decode()
    real = marketer.get(url, {"visitor": "grace@example.com"}).content.decode()

    assert "Ada, your cart is waiting" in sample
    assert "Grace, your cart is waiting" in real
    assert 'sandbox=""' in real


def test_send_a_test_to_me_mails_the_admin_user(marketer):
    _, _, template = make_campaign()

    response = marketer.post(f"/admin/campaigns/emailtemplate/{template.pk}/send-test/")

    assert response.status_code == 302
    [email] = mail.outbox
    assert email.to == ["mia@shop.test"]
    assert email.subject == "[Test] Ada, your cart is waiting"


def test_the_dev_mailbox_shows_the_rendered_html(marketer):
    kept = DevMail.objects.create(esp_message_id="dev-1", from_email="a@shop.test",
                                  to="b@example.com", subject="Hello", html="<p>Hi there</p>")  # fmt: skip

    page = marketer.get(f"/admin/campaigns/devmail/{kept.pk}/change/").content.decode()

    assert "srcdoc=" in page and "Hi there" in page


def test_importing_codes_skips_ones_already_in_the_pool(marketer):
    campaign, _, _ = make_campaign()
    pool = PromoPool.objects.create(site=campaign.site, name="Spring")
    PromoCode.objects.create(pool=pool, code="A1")
    upload = SimpleUploadedFile("codes.csv", b"code\nA1\nB2\nC3\nB2\n", content_type="text/csv")

    response = marketer.post(f"/admin/campaigns/promopool/{pool.pk}/import/", {"csv_file": upload})

    assert response.status_code == 302
    assert sorted(pool.codes.values_list("code", flat=True)) == ["A1", "B2", "C3"]


def test_variant_results_count_each_message_once(marketer):
    from decimal import Decimal

    from campaigns.models import Attribution, Message, StepVariant
    from tests.email.conftest import T0, make_template, queue_messages

    campaign, step, template_a = make_campaign()
    template_b = make_template(campaign.site, name="B")
    StepVariant.objects.create(step=step, template=template_a, share=50)
    StepVariant.objects.create(step=step, template=template_b, share=50)
    first, second = queue_messages(campaign, step, 2)
    Message.objects.filter(pk=first.pk).update(status="clicked", sent_at=T0, clicked_at=T0)
    Message.objects.filter(pk=second.pk).update(template=template_b, status="sent", sent_at=T0)
    Attribution.objects.create(site=campaign.site, message=first, event_id=1, ordered_at=T0,
                               revenue=Decimal("30.00"))  # fmt: skip

    page = marketer.get("/admin/campaigns/stepvariant/").content.decode()

    rows = {
        name: page.split(f">{name}<", 1)[1].split("</tr>", 1)[0] for name in ("Cart reminder", "B")
    }
    assert '<td class="field-clicked">1</td>' in rows["Cart reminder"]
    assert '<td class="field-revenue">30.00</td>' in rows["Cart reminder"]
    assert '<td class="field-sent">1</td>' in rows["B"]
    assert '<td class="field-clicked">0</td>' in rows["B"]


def test_the_live_preview_renders_unsaved_edits_and_names_refused_tags(marketer):
    campaign, _, _ = make_campaign()
    make_profile(campaign.site, "grace@example.com", traits={"first_name": "Grace"})
    url = "/admin/campaigns/emailtemplate/live-preview/"
    fields = {"site": campaign.site_id, "subject": "Hi {{ first_name }}", "preheader": "",
              "html": "<p>Draft for {{ first_name }}</p>", "text": ""}  # fmt: skip

    sample = marketer.post(url, fields).json()
    real = marketer.post(url, {**fields, "visitor": "grace@example.com"}).json()
    refused = marketer.post(url, {**fields, "html": "{% load static %}"}).json()

    assert sample["subject"] == "Hi Ada" and "Draft for Ada" in sample["html"]
    assert real["subject"] == "Hi Grace" and real["visitor"] == "grace@example.com"
    assert "the tag {% load %} is not allowed" in refused["errors"]["html"][0]
