"""Emails write money the way the site's locale does (Site.locale, CLDR through Babel):
the same amount reads "€39.00" for an English shop and "39,00 €" for a German one, in
the products block, the cart value and the text part alike."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from reengage.demo import DEMO_SITE_NAME
from reengage.money import format_money
from tests.email.test_demo_email import product_added, render_demo
from tests.factories import make_site
from tracking.models import Site


@pytest.mark.parametrize(
    ("locale", "currency", "written"),
    [("en", "EUR", "€1,234.50"), ("en_GB", "GBP", "£1,234.50"), ("de_DE", "EUR", "1.234,50 €"),
     ("fr_FR", "CHF", "1 234,50 CHF"), ("de-DE", "EUR", "1.234,50 €"), ("", "CHF", "CHF 1,234.50"),
     ("de_DE", "", "1.234,50")],
)  # fmt: skip
def test_money_is_written_in_the_locales_way(locale, currency, written):
    assert format_money(Decimal("1234.5"), currency, locale) == written


@pytest.mark.django_db
def test_a_german_shops_email_writes_euros_the_german_way_in_both_parts():
    call_command("seed_demo", verbosity=0)
    demo_site = Site.objects.get(name=DEMO_SITE_NAME)
    demo_site.locale = "de_DE"
    demo_site.save()
    rendered = render_demo(demo_site, product_added(), locale=demo_site.locale)
    assert "39,00 €" in rendered.html
    assert "39,00 €" in rendered.text
    assert "€39.00" not in rendered.html + rendered.text


@pytest.mark.django_db
def test_a_locale_nobody_knows_is_a_form_error_naming_the_field():
    site = make_site()
    site.locale = "klingon_XX"
    with pytest.raises(ValidationError) as raised:
        site.full_clean()
    assert "locale" in raised.value.message_dict


@pytest.mark.django_db
def test_sites_write_english_until_told_otherwise():
    assert make_site().locale == "en"
    assert Site._meta.get_field("locale").default == "en"


def test_amounts_written_once_are_never_taken_for_another_amount_locale_or_currency():
    # format_money remembers what it wrote; each of these must still be its own.
    cases = [
        (Decimal("39"), "EUR", "en", "€39.00"),
        (Decimal("39"), "EUR", "de_DE", "39,00 €"),
        (Decimal("39"), "USD", "en", "$39.00"),
        (Decimal("39"), "", "en", "39.00"),
        (Decimal("-0"), "EUR", "en", "-€0.00"),
        (Decimal("0"), "EUR", "en", "€0.00"),
        (Decimal("39.005"), "EUR", "en", "€39.00"),
        (Decimal("39.015"), "EUR", "en", "€39.02"),
    ]
    for _ in range(2):  # the second round is answered from what the first wrote
        for amount, currency, locale, written in cases:
            assert format_money(amount, currency, locale) == written, (amount, currency, locale)
