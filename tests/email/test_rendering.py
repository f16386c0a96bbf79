"""Templates: the sandbox refuses escapes, output is escaped, the layout carries the footer."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.email.rendering import EmailData, html_to_text, render_email
from campaigns.models import EmailTemplate
from tests.email.conftest import TRIGGER
from tests.factories import make_site

pytestmark = pytest.mark.django_db


def data(**overrides) -> EmailData:
    values = {
        "message_id": 7, "site_id": 1, "site_name": "Shop", "postal_address": "1 Market St\nLeeds",
        "to_email": "ada@example.com", "traits": {"first_name": "Ada"}, "trigger": TRIGGER,
    }  # fmt: skip
    values.update(overrides)
    return EmailData(**values)


def template(**parts) -> EmailTemplate:
    values = {"name": "t", "subject": "Hi", "html": "<p>Hi</p>", "from_email": "a@shop.test"}
    values.update(parts)
    return EmailTemplate(site=make_site(), **values)


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("{% load static %}", "{% load %} is not allowed"),
        ("{% include 'admin/base.html' %}", "{% include %} is not allowed"),
        ("{% extends 'admin/base.html' %}", "{% extends %} is not allowed"),
        ("{% debug %}", "{% debug %} is not allowed"),
        ("{% ssi '/etc/passwd' %}", "{% ssi %} is not allowed"),
        (
            "{% autoescape off %}{{ first_name }}{% endautoescape %}",
            "{% autoescape %} is not allowed",
        ),
        ("{{ first_name|safe }}", "filter |safe is not allowed"),
        ("{% url 'admin:index' %}", "{% url %} is not allowed"),
        ("{% if %}", "Unexpected end of expression in if tag"),
    ],
)
def test_escape_attempts_are_refused_with_a_form_error_naming_the_field(source, named):
    bad = template(html=f"<p>{source}</p>")

    with pytest.raises(ValidationError) as refused:
        bad.full_clean()

    errors = refused.value.message_dict
    assert list(errors) == ["html"]
    assert named in errors["html"][0]


def test_a_bad_subject_is_reported_on_the_subject_field():
    with pytest.raises(ValidationError) as refused:
        template(subject="{{ first_name|pprint }}").full_clean()
    assert "filter |pprint is not allowed" in refused.value.message_dict["subject"][0]


def test_visitor_data_is_escaped_and_unsafe_urls_dropped():
    hostile = {
        "products": [
            {"name": "<script>alert(1)</script>", "price": "9.99",
             "url": "javascript:alert(1)", "image_url": "data:text/html,<b>x</b>"},
        ],
        "url": "javascript:alert(2)",
    }  # fmt: skip
    body = "<p>{{ first_name }}</p>{{ products_block }}<a href='{{ cart_url }}'>cart</a>"

    html = render_email(
        template(html=body),
        data(traits={"first_name": "<img src=x onerror=alert(3)>"}, trigger=hostile),
    ).html

    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert "javascript:" not in html and "data:text/html" not in html


def test_quotes_in_product_links_images_and_names_cannot_leave_their_attribute():
    trigger = {
        "products": [
            {"name": 'Tote" onload="alert(1)', "price": "20", "quantity": 2,
             "url": 'https://shop.test/p?a=1&b="x" onclick="alert(2)',
             "image_url": "https://shop.test/i.jpg' onerror='alert(3)"},
        ],
    }  # fmt: skip
    html = render_email(
        template(html="{{ products_block }}"), data(trigger=trigger), tracking=False
    ).html

    assert 'alt="Tote&quot; onload=&quot;alert(1)"' in html
    assert 'href="https://shop.test/p?a=1&amp;b=&quot;x&quot; onclick=&quot;alert(2)"' in html
    assert 'src="https://shop.test/i.jpg&#x27; onerror=&#x27;alert(3)"' in html
    assert "2 × " in html and 'onload="' not in html and "onclick=" + '"' not in html


def test_the_layout_inlines_css_and_carries_the_required_footer():
    rendered = render_email(template(html="<p>Hello {{ first_name }}</p>"), data())

    assert 'style="' in rendered.html and "<style>" in rendered.html  # inlined; @media kept
    assert "1 Market St<br>Leeds" in rendered.html
    assert "/email/unsubscribe/" in rendered.html
    assert "/email/unsubscribe/" in rendered.text
    assert rendered.text.startswith("Hello Ada")


def test_the_text_part_is_generated_from_the_html_when_empty():
    body = "<h1>Your cart</h1><p>Hi&nbsp;Ada,<br>it is <b>waiting</b>.</p><a href='https://shop.test/c'>Go</a>"
    assert (
        html_to_text(body) == "Your cart\n\nHi\xa0Ada,\nit is waiting.\n\nGo (https://shop.test/c)"
    )


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("<p>Your\r\n   cart is\n\n\twaiting</p>", "Your cart is waiting"),
        ("<p>one  \n  </p>\n\n<p>\n two</p>", "one\n\ntwo"),
        ("a \n<br>\n b", "a\nb"),
        ("<a href='https://shop.test/c'>\n  Back to\n  your cart\n</a>",
         "Back to your cart (https://shop.test/c)"),
        ("<a href='https://shop.test/c'>\nhttps://shop.test/c\n</a>", "https://shop.test/c"),
        ("<td>Shirt</td>\r<td>\u20ac20</td></tr>\n<tr><td>Tote</td>", "Shirt \u20ac20\nTote"),
    ],
)  # fmt: skip
def test_line_breaks_in_the_html_source_are_spaces_in_the_text_part(body, text):
    assert html_to_text(body) == text


def test_a_written_text_part_is_used_as_is():
    rendered = render_email(template(text="Hello {{ first_name }} & welcome"), data())
    assert rendered.text.startswith("Hello Ada & welcome\n")


def test_the_subject_is_plain_text_not_html_escaped():
    rendered = render_email(
        template(subject="{{ first_name }} & Co"), data(traits={"first_name": "Tom's"})
    )
    assert rendered.subject == "Tom's & Co"


def test_remote_stylesheets_are_not_fetched():
    # css-inline fetches <link rel=stylesheet> by default (it would raise here: nothing
    # listens on the port); inlining a template's own CSS must never make us request URLs.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    body = (
        f'<link rel="stylesheet" href="http://127.0.0.1:{port}/internal.css">'
        "<style>p.note { color: #555; }</style><p class='note'>x</p>"
    )

    rendered = render_email(template(html=body), data())

    assert '<p class="note" style="color: #555;">x</p>' in rendered.html


def test_a_single_product_event_renders_as_one_product():
    from campaigns.email.rendering import products_from

    trigger = {"product_id": "mug", "name": "Enamel camp mug", "price": 18, "quantity": 2,
               "url": "https://shop.test/mug"}  # fmt: skip
    assert [(p["name"], p["quantity"], p["url"]) for p in products_from(trigger)] == [
        ("Enamel camp mug", 2, "https://shop.test/mug")
    ]
    assert products_from({"value": 10}) == []
