"""The demo's email, which marketers copy: a real cart link, one money format, no empty columns."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from django.core.management import call_command

from campaigns.email.rendering import (
    EmailData,
    format_money,
    html_to_text,
    read_click_token,
    render_email,
)
from campaigns.email.sending import send_queued
from campaigns.engine.tick import tick
from campaigns.models import DevMail, EmailTemplate, Message
from reengage.demo import DEMO_SITE_NAME
from tests.factories import segment_event
from tracking.ingest import SiteKey, parse_batch
from tracking.models import Site
from tracking.storage import store_events

pytestmark = pytest.mark.django_db

SHOP = "http://127.0.0.1:8000"


@pytest.fixture
def demo_site():
    call_command("seed_demo", verbosity=0)
    return Site.objects.get(name=DEMO_SITE_NAME)


def product_added(**extra) -> dict:
    """What templates/demo/product.html sends when the lantern is added to the cart."""
    lantern = {"product_id": "lamp", "name": "Folding lantern", "price": 39.0, "quantity": 1,
               "url": f"{SHOP}/demo/product/lamp/"}  # fmt: skip
    return {**lantern, "cart_id": "demo", "value": 39.0, "currency": "EUR",
            "products": [lantern], **extra}  # fmt: skip


def render_demo(site, trigger: dict, **data):
    template = EmailTemplate.objects.get(site=site)
    values = {"message_id": 1, "site_id": site.id, "site_name": site.name,
              "postal_address": site.postal_address, "to_email": "ann@example.com",
              "traits": {"first_name": "Ann"}, "trigger": trigger,
              "cart_path": site.cart_path}  # fmt: skip
    values.update(data)
    return render_email(template, EmailData(**values), tracking=False)


def links(html: str) -> dict[str, str]:
    return {
        unescape(re.sub(r"<[^>]+>", "", label)).strip(): unescape(href)
        for href, label in re.findall(r'<a href="([^"]+)"[^>]*>(.*?)</a>', html, re.S)
    }


def stored(site, *calls, at) -> None:
    key = SiteKey(site.id, False, ("127.0.0.1",), True, 395, (site.secret_key,), 10**6)
    events, _ = parse_batch({"batch": list(calls)}, key=key, received_at=at,
                            client_ip="127.0.0.1", single_type=None)  # fmt: skip
    store_events(events, now=at)


def test_the_sent_demo_email_links_back_to_the_cart_not_the_product_page(demo_site, settings):
    settings.EMAIL_BACKEND = "campaigns.email.devmail.EmailBackend"
    start = datetime.now(UTC)
    email = "ann@example.com"
    signup = segment_event(
        "identify", anonymousId="demo-visitor", userId="demo-ann", timestamp=start.isoformat(),
        traits={"email": email, "user_hash": demo_site.user_hash(email)},
        context={"consent": {"analytics": True, "email": True, "advertising": True}},
    )  # fmt: skip
    added = segment_event(
        anonymousId="demo-visitor", event="Product Added", timestamp=start.isoformat(),
        properties=product_added(cart_url=f"{SHOP}/demo/cart/"),
    )  # fmt: skip
    stored(demo_site, signup, added, at=start)
    tick(now=start + timedelta(minutes=3))
    send_queued(clock=lambda: start + timedelta(minutes=3))

    mail = DevMail.objects.get(message=Message.objects.get(site=demo_site))
    tracked = links(mail.html)["Back to your cart"]
    token = tracked.rstrip("/").rsplit("/", 1)[-1]
    assert read_click_token(token)[1].startswith(f"{SHOP}/demo/cart/?utm_source=")
    assert f"Back to your cart ({SHOP}/demo/cart/)" in mail.text


def test_without_a_cart_url_property_the_sites_cart_path_is_used(demo_site):
    html = render_demo(demo_site, product_added()).html
    assert links(html)["Back to your cart"] == f"{SHOP}/demo/cart/"


def test_a_site_without_a_cart_path_links_to_the_events_page(demo_site):
    html = render_demo(demo_site, product_added(), cart_path="").html
    assert links(html)["Back to your cart"] == f"{SHOP}/demo/product/lamp/"


def test_money_reads_the_same_in_the_intro_the_products_and_the_text_part(demo_site):
    rendered = render_demo(demo_site, product_added())
    assert rendered.html.count("€39.00") == 2  # "Your cart … is waiting: €39.00" and the row
    assert "EUR" not in rendered.html
    assert rendered.text.count("€39.00") == 2 and "EUR" not in rendered.text


def test_the_products_block_has_no_image_column_without_images(demo_site):
    html = render_demo(demo_site, product_added()).html
    assert 'width="96"' not in html
    with_image = product_added()
    with_image["products"][0]["image_url"] = f"{SHOP}/static/lamp.png"
    assert 'width="96"' in render_demo(demo_site, with_image).html


def test_the_text_part_keeps_the_heading_on_one_line(demo_site):
    text = render_demo(demo_site, product_added()).text
    assert text.startswith("Ann, you left something behind\n\n")
    assert f"Your cart at {DEMO_SITE_NAME} is waiting: €39.00." in text


def test_the_body_the_from_name_and_the_footer_name_the_same_shop(demo_site):
    template = EmailTemplate.objects.get(site=demo_site)
    rendered = render_demo(demo_site, product_added())
    assert template.from_name == DEMO_SITE_NAME
    assert f"Your cart at {DEMO_SITE_NAME}" in rendered.text
    assert f"You receive this email from {DEMO_SITE_NAME}." in rendered.text
    assert "Demo store" not in rendered.html


def test_a_checkout_seeded_before_the_rename_keeps_its_one_demo_site():
    call_command("seed_demo", verbosity=0)
    Site.objects.filter(name=DEMO_SITE_NAME).update(name="Demo store")
    call_command("seed_demo", verbosity=0)
    assert list(Site.objects.values_list("name", flat=True)) == [DEMO_SITE_NAME]


@pytest.mark.parametrize(
    ("amount", "currency", "written"),
    [("39", "EUR", "€39.00"), ("1234.5", "usd", "$1,234.50"), ("39", "CHF", "CHF 39.00"),
     ("39", "", "39.00"), (None, "EUR", "")],
)  # fmt: skip
def test_one_money_format_for_every_part(amount, currency, written):
    from decimal import Decimal

    assert format_money(Decimal(amount) if amount else None, currency) == written


def test_source_line_breaks_inside_a_paragraph_are_spaces_in_the_text_part():
    assert html_to_text("<h1>You left\n   something behind</h1><p>a<br>b</p>") == (
        "You left something behind\n\na\nb"
    )
