"""Amplification: a 10-byte price or a template filter cannot make a 13 MB email or a
15 s render. Numbers are bounded when they reach an email; the template language's
size arguments are capped; one budget (EMAIL_RENDER_MAX_BYTES / _SECONDS) covers
preview, test send and send time."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ValidationError

from campaigns.email.rendering import render_email, validate_template
from campaigns.email.sandbox import RenderLimitExceeded
from campaigns.models import EmailTemplate, Message
from tests.email.conftest import TRIGGER, make_campaign, make_profile
from tests.email.test_admin import marketer  # noqa: F401 - the fixture
from tests.email.test_rendering import data, template

pytestmark = pytest.mark.django_db

# 100 characters; four loops over its letters are 10^8 iterations (minutes unbounded).
HUNDRED = "x" * 100
NESTED_LOOPS = (
    f'{{% with s="{HUNDRED}"|make_list %}}'
    "{% for a in s %}{% for b in s %}{% for c in s %}{% for d in s %}"
    "{% if a %}{% endif %}"
    "{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endwith %}"
)
WIDE_LOOPS = (
    f'{{% with s="{HUNDRED}"|make_list %}}'
    "{% for a in s %}{% for b in s %}{% for c in s %}{{ first_name }} and some words{% endfor %}"
    "{% endfor %}{% endfor %}{% endwith %}"
)


def timed(fn):
    started = time.monotonic()
    try:
        return fn(), time.monotonic() - started
    except Exception as exc:
        return exc, time.monotonic() - started


@pytest.mark.parametrize("price", ["1e10000000", "1e30000000", 10**1000, "-1e400", 1e300])
def test_a_huge_price_stored_in_an_event_renders_no_digits(price):
    trigger = {**TRIGGER, "products": [{"name": "Shirt", "price": price, "quantity": 10**12}]}
    body = (
        "{% for p in products %}[{{ p.price }}|{{ p.price_display }}|{{ p.quantity }}]{% endfor %}"
    )
    rendered, seconds = timed(lambda: render_email(template(html=body), data(trigger=trigger)))
    assert "[None||1]" in rendered.html
    assert len(rendered.html) < 20_000 and seconds < 1


def test_an_honest_price_still_renders():
    rendered = render_email(template(html="{{ products_block }}"), data())
    assert "49.50" in rendered.html and "2 ×" in rendered.html


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ('{{ first_name|stringformat:"20000000s" }}', "stringformat"),
        ('{{ first_name|stringformat:"-20000000s" }}', "stringformat"),
        ('{{ 1.5|stringformat:".20000000f" }}', "stringformat"),
        ("{{ 1.5|floatformat:20000000 }}", "floatformat"),
        ('{{ 1.5|floatformat:"20000000g" }}', "floatformat"),
        (NESTED_LOOPS, "EMAIL_RENDER_MAX_SECONDS"),
        (WIDE_LOOPS, "EMAIL_RENDER_MAX_BYTES"),
    ],
)
def test_a_template_that_would_render_megabytes_or_seconds_is_refused_quickly(
    settings, source, named
):
    settings.EMAIL_RENDER_MAX_SECONDS = 0.5
    settings.EMAIL_RENDER_MAX_BYTES = 200_000
    with pytest.raises(ValidationError) as caught:
        timed_validation = time.monotonic()
        validate_template(template(html=source))
    assert time.monotonic() - timed_validation < 3
    assert named in caught.value.message_dict["html"][0]

    # And at send time (render_email), should such a template already be saved.
    result, seconds = timed(lambda: render_email(template(html=source), data()))
    assert isinstance(result, RenderLimitExceeded), result
    assert named in str(result) and seconds < 3


def test_floatformat_of_a_visitors_huge_number_writes_nothing():
    body = "[{{ traits.score|floatformat:2 }}][{{ traits.ok|floatformat:2 }}]"
    traits = {"first_name": "Ada", "score": "1e10000000", "ok": "3.14159"}
    rendered, seconds = timed(lambda: render_email(template(html=body), data(traits=traits)))
    assert "[][3.14]" in rendered.html and seconds < 1


def test_a_normal_template_with_loops_renders_within_the_budget():
    body = "{% for p in products %}{% for q in products %}{{ p.name }}/{{ q.name }} {% endfor %}{% endfor %}"
    rendered = render_email(template(html=body), data())
    assert "Linen shirt/Socks" in rendered.html


def test_the_live_preview_names_the_limit(marketer, settings):  # noqa: F811
    settings.EMAIL_RENDER_MAX_SECONDS = 0.5
    campaign, _, _ = make_campaign()
    fields = {"site": campaign.site_id, "subject": "Hi", "preheader": "",
              "html": NESTED_LOOPS, "text": ""}  # fmt: skip
    started = time.monotonic()
    answer = marketer.post("/admin/campaigns/emailtemplate/live-preview/", fields).json()
    assert time.monotonic() - started < 3
    assert "EMAIL_RENDER_MAX_SECONDS" in answer["errors"]["html"][0]


def test_the_live_preview_with_a_visitor_whose_data_blows_the_budget_names_the_limit(
    marketer,  # noqa: F811
    settings,
):
    settings.EMAIL_RENDER_MAX_BYTES = 50_000
    campaign, _, _ = make_campaign()
    make_profile(campaign.site, "eve@example.com", traits={"first_name": "E" * 8000})
    fields = {"site": campaign.site_id, "subject": "Hi", "preheader": "",
              "html": "{% for p in 'abcdefghij'|make_list %}{{ first_name }}{% endfor %}",
              "text": ""}  # fmt: skip
    url = "/admin/campaigns/emailtemplate/live-preview/"
    assert "html" in marketer.post(url, fields).json()  # sample data fits
    answer = marketer.post(url, {**fields, "visitor": "eve@example.com"}).json()
    assert "EMAIL_RENDER_MAX_BYTES" in answer["errors"]["html"][0]


def test_a_message_whose_render_blows_the_budget_fails_naming_the_limit(settings, redis_client):
    from campaigns.email.sending import send_one

    settings.EMAIL_RENDER_MAX_BYTES = 50_000
    campaign, step, _ = make_campaign()
    EmailTemplate.objects.filter(pk=step.template_id).update(
        html="{% for p in 'abcdefghij'|make_list %}{{ first_name }}{% endfor %}"
    )
    from tests.email.conftest import queue_messages

    [message] = queue_messages(campaign, step)
    message.profile.traits = {"first_name": "E" * 8000}
    message.profile.save()
    assert send_one(message.id) == "failed"
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "EMAIL_RENDER_MAX_BYTES" in message.error
