"""Render a marketer's email template safely, inside the base layout, CSS inlined.

Templates are compiled in the sandbox (campaigns/email/sandbox.py). The context holds only
plain values (strings, numbers, lists, dicts built here), so there is no object
to traverse into. Output is autoescaped; visitor-supplied URLs (product links
and images) are kept only when they are http(s).

`render_email` is the one entry point the sender, the preview and the
view-in-browser page share, so what a marketer previews is what is sent.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache, partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import css_inline
from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.template import Context
from django.template.defaultfilters import linebreaksbr
from django.template.loader import render_to_string
from django.utils.crypto import salted_hmac
from django.utils.encoding import force_bytes
from django.utils.safestring import SafeString, mark_safe

from campaigns.email.sandbox import (
    TEMPLATE_PARTS,
    RenderLimitExceeded,
    TemplateRefused,
    compile_part,
    compiled,
    render_budget,
)
from reengage.money import format_money

# --- validation ----------------------------------------------------------------


def validate_template(template) -> None:
    """Compile every part, then render with sample data; raise a ValidationError per field."""
    errors: dict[str, list[str]] = {}
    for part in TEMPLATE_PARTS:
        try:
            with render_budget():
                compile_part(getattr(template, part) or "").render(
                    Context(sample_context(), autoescape=True)
                )
        except TemplateRefused as exc:
            errors.setdefault(part, []).append(str(exc))
        except Exception as exc:  # a filter raising at render time, e.g. bad date format
            errors.setdefault(part, []).append(f"Rendering with sample data failed: {exc}")
    if errors:
        raise ValidationError(errors)


# --- the context ------------------------------------------------------------------


def safe_url(value: Any) -> str:
    """Visitor-supplied URLs: only absolute http(s), never javascript:/data:."""
    if not isinstance(value, str):
        return ""
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return ""
    return value


# The same bound ingest applies (tracking.ingest.MAX_AMOUNT); events stored before it
# existed may still hold more. Formatting "1e10000000" would write 10 million digits.
MAX_AMOUNT = Decimal("1000000000")
MAX_QUANTITY = 100_000


def _money(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and abs(value) > MAX_AMOUNT:
        return None
    try:
        amount = Decimal(str(value)[:100])
    except (InvalidOperation, ValueError):
        return None
    # adjusted() first: abs() of 1e10000000 overflows the decimal context.
    if not amount.is_finite() or amount.adjusted() > 9 or abs(amount) > MAX_AMOUNT:
        return None
    return amount


def _currency(trigger: dict) -> str:
    code = trigger.get("currency")
    return code.strip().upper()[:3] if isinstance(code, str) else ""


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-ish data only (traits come from visitors): no objects, bounded depth."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if depth > 4:
        return None
    if isinstance(value, dict):
        return {
            str(k): _plain(v, depth + 1)
            for k, v in value.items()
            if isinstance(k, str) and not k.startswith("_")
        }
    if isinstance(value, list):
        return [_plain(v, depth + 1) for v in value[:100]]
    return str(value)


def products_from(trigger: dict, locale: str = "") -> list[dict]:
    if not isinstance(trigger, dict):
        return []
    currency = _currency(trigger)
    products = trigger.get("products")
    if not isinstance(products, list):
        # Segment's single-product events (Product Added, Product Viewed) carry the
        # product's fields at the top level instead of a products list.
        if not (trigger.get("product_id") or trigger.get("sku") or trigger.get("name")):
            return []
        products = [trigger]
    result = []
    for item in products[:20]:
        if not isinstance(item, dict):
            continue
        quantity = item.get("quantity")
        result.append(
            {
                "name": str(item.get("name") or "")[:200],
                "price": _money(item.get("price")),
                "price_display": format_money(_money(item.get("price")), currency, locale),
                "quantity": (
                    quantity if isinstance(quantity, int) and 0 < quantity <= MAX_QUANTITY else 1
                ),
                "image": safe_url(item.get("image_url") or item.get("image")),
                "url": safe_url(item.get("url")),
            }
        )
    return result


@dataclass
class EmailLinks:
    unsubscribe_url: str = ""
    preferences_url: str = ""
    view_in_browser_url: str = ""


@dataclass
class EmailData:
    """Everything a render needs, loaded by the caller (sender, preview, browser view)."""

    message_id: int
    site_id: int
    site_name: str
    postal_address: str
    to_email: str
    traits: dict = field(default_factory=dict)
    trigger: dict = field(default_factory=dict)
    promo_code: str = ""
    campaign_id: int | None = None
    campaign_name: str = ""
    template_id: int | None = None
    click_tracking: bool = True
    open_tracking: bool = False
    utm_source: str = "reengage"
    utm_medium: str = "email"
    # The site's cart page ("/cart/"): cart_url when the event carries none.
    cart_path: str = ""
    locale: str = ""  # the site's: how money is written


def _escape(text: str) -> str:
    """Django's `escape` (the same characters, the same entities) for a plain string."""
    return html.escape(str(text))


_PRODUCT_IMAGE = '<td width="96" style="padding:8px 12px 8px 0;vertical-align:top">{}</td>'
_PRODUCT_TEXT = (
    '<td style="padding:8px 0;vertical-align:top;font-family:Helvetica,Arial,sans-serif;'
    'font-size:15px">{}<br>{}</td>'
)


def products_block(products: list[dict]) -> SafeString:
    """The trigger's products as a mail-client-safe table (every value escaped).

    The image column is there only when a product has an image: an empty 96-px
    column pushes the names aside for nothing. (Written with `html.escape`, as
    `format_html` escapes, without its per-call wrappers: the block is built in every
    email.)
    """
    if not products:
        return mark_safe("")
    with_images = any(product["image"] for product in products)
    rows = []
    for product in products:
        name = _escape(product["name"])
        image = (
            f'<img src="{_escape(product["image"])}" width="80" alt="{name}" '
            'style="display:block;border:0;width:80px;height:auto">'
            if product["image"] else ""
        )  # fmt: skip
        title = (
            f'<a href="{_escape(product["url"])}" style="color:#18181b;font-weight:bold">'
            f"{name}</a>"
            if product["url"] else f"<strong>{name}</strong>"
        )  # fmt: skip
        quantity = f"{product['quantity']} × " if product["quantity"] > 1 else ""
        cells = _PRODUCT_TEXT.format(title, _escape(quantity + product["price_display"]))
        if with_images:
            cells = _PRODUCT_IMAGE.format(image) + cells
        rows.append(f"<tr>{cells}</tr>")
    return mark_safe(  # noqa: S308 - every value in it escaped above
        '<table role="presentation" class="products" width="100%" cellpadding="0" '
        'cellspacing="0" border="0" style="margin:16px 0">' + "".join(rows) + "</table>"
    )


def cart_url_for(trigger: dict, cart_path: str = "") -> str:
    """The event's `cart_url`; else the site's cart page on the event's origin; else its `url`.

    The trigger of an abandoned cart is often "Product Added" on a product page, so
    its `url` is the product, not the cart.
    """
    explicit = safe_url(trigger.get("cart_url"))
    if explicit:
        return explicit
    page = safe_url(trigger.get("url"))
    if page and cart_path.startswith("/"):
        parts = urlsplit(page)
        return urlunsplit((parts.scheme, parts.netloc, cart_path, "", ""))
    return page


def template_context(data: EmailData, links: EmailLinks) -> dict:
    traits = _plain(data.traits) if isinstance(data.traits, dict) else {}
    trigger = data.trigger if isinstance(data.trigger, dict) else {}
    products = products_from(trigger, data.locale)
    first_name = traits.get("first_name") or traits.get("firstName") or ""
    currency = _currency(trigger)
    value = _money(trigger.get("value") if "value" in trigger else trigger.get("total"))
    return {
        "first_name": first_name if isinstance(first_name, str) else "",
        "traits": traits,
        "email": data.to_email,
        "products": products,
        # A callable: the template engine builds the block only where it is used.
        "products_block": partial(products_block, products),
        "value": value,
        "currency": currency,
        # "€89.50": the value as the products block writes prices.
        "value_display": format_money(value, currency, data.locale),
        "cart_url": cart_url_for(trigger, data.cart_path),
        "promo_code": data.promo_code,
        "site_name": data.site_name,
        "unsubscribe_url": links.unsubscribe_url,
        "preferences_url": links.preferences_url,
        "view_in_browser_url": links.view_in_browser_url,
    }


def sample_context() -> dict:
    data = EmailData(
        message_id=0, site_id=0, site_name="Sample Shop", postal_address="1 Sample Street",
        to_email="ada@example.com",
        traits={"first_name": "Ada", "last_name": "Lovelace", "plan": "pro"},
        trigger=SAMPLE_TRIGGER, promo_code="WELCOME10",
    )  # fmt: skip
    return template_context(data, EmailLinks("#unsubscribe", "#preferences", "#view"))


SAMPLE_TRIGGER = {
    "currency": "EUR",
    "value": 89.5,
    "url": "https://shop.example.com/p/shirt",
    "cart_url": "https://shop.example.com/cart/",
    "products": [
        {"name": "Linen shirt", "price": 49.5, "quantity": 1,
         "image_url": "https://shop.example.com/img/shirt.jpg",
         "url": "https://shop.example.com/p/shirt"},
        {"name": "Canvas tote", "price": 20, "quantity": 2,
         "image_url": "https://shop.example.com/img/tote.jpg",
         "url": "https://shop.example.com/p/tote"},
    ],
}  # fmt: skip


# --- links: unsubscribe, click tracking, open pixel --------------------------------

UNSUBSCRIBE_SALT = "reengage.email.unsubscribe"
CLICK_SALT = "reengage.email.click"
OPEN_SALT = "reengage.email.open"
VIEW_SALT = "reengage.email.view"


class _KeyedSigner(signing.TimestampSigner):
    """Django's TimestampSigner, its tokens byte for byte, with its key's HMAC keyed once:
    `signing.dumps` builds a signer, derives the key (a SHA-256) and keys a new HMAC for
    every token — half the cost of the four or more tokens in each email. Other keys
    (SECRET_KEY_FALLBACKS, when a token is read) take Django's own path."""

    def __init__(self, *, key, salt: str):
        super().__init__(key=key, salt=salt)
        # Django's own derivation (as `Signer.signature` calls it), over no message yet.
        self._mac = salted_hmac(self.salt + "signer", b"", self.key, algorithm=self.algorithm)

    def signature(self, value, key=None) -> str:
        if key is not None and key != self.key:
            return super().signature(value, key)
        mac = self._mac.copy()
        mac.update(force_bytes(value))
        return signing.b64_encode(mac.digest()).decode()


_SIGNERS: dict[tuple, signing.Signer] = {}


def _signer(kind: type[signing.Signer], salt: str) -> signing.Signer:
    """This salt's signer for SECRET_KEY and its fallbacks (which tests may override),
    made once."""
    keys = (settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))
    found = _SIGNERS.get((kind, salt, keys))
    if found is None:
        found = _SIGNERS[(kind, salt, keys)] = kind(key=keys[0], salt=salt)
    return found


def keyed_signer(salt: str) -> _KeyedSigner:
    return _signer(_KeyedSigner, salt)


def message_token(message_id: int, salt: str) -> str:
    """`signing.dumps(message_id, salt=salt)`, as `signing.loads` reads it."""
    return keyed_signer(salt).sign_object(message_id)


def links_for(message_id: int) -> EmailLinks:
    base = settings.PUBLIC_URL
    token = message_token(message_id, UNSUBSCRIBE_SALT)
    return EmailLinks(
        unsubscribe_url=f"{base}/email/unsubscribe/{token}/",
        preferences_url=f"{base}/email/preferences/{token}/",
        view_in_browser_url=f"{base}/email/view/{message_token(message_id, VIEW_SALT)}/",
    )


def with_utm(url: str, data: EmailData) -> str:
    return _with_utm(url, data.utm_source, data.utm_medium, data.campaign_id, data.template_id)


@lru_cache(maxsize=4096)
def _with_utm(
    url: str, source: str, medium: str, campaign_id: int | None, template_id: int | None
) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {key for key, _ in query}
    utm = {
        "utm_source": source,
        "utm_medium": medium,
        "utm_campaign": f"c{campaign_id}" if campaign_id else "reengage",
        "utm_content": f"t{template_id}" if template_id else "",
    }
    query += [(key, value) for key, value in utm.items() if value and key not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def _click_signers() -> tuple[signing.TimestampSigner, signing.Signer]:
    """(the timestamped signer of new click tokens, the signer of tokens in emails sent
    before they expired)."""
    return keyed_signer(CLICK_SALT + ".t"), _signer(signing.Signer, CLICK_SALT)


def tracking_link_max_age() -> int:
    """Seconds a click, open or browser-view token works (EMAIL_TRACKING_LINK_MAX_AGE_DAYS)."""
    return settings.EMAIL_TRACKING_LINK_MAX_AGE_DAYS * 86400


def click_token(message_id: int, url: str) -> str:
    """A signed, timestamped "<message id> <url>": the redirect target cannot be changed,
    and the token stops working after EMAIL_TRACKING_LINK_MAX_AGE_DAYS."""
    payload = base64.urlsafe_b64encode(f"{message_id} {url}".encode()).rstrip(b"=").decode()
    return _click_signers()[0].sign(payload)


def read_click_token(token: str) -> tuple[int, str]:
    """(message id, url) of a click token; raises signing.SignatureExpired,
    signing.BadSignature or ValueError."""
    timestamped, legacy = _click_signers()
    try:
        payload = timestamped.unsign(token, max_age=tracking_link_max_age())
    except signing.SignatureExpired:
        raise
    except signing.BadSignature:
        if not settings.EMAIL_ACCEPT_UNDATED_CLICK_TOKENS:
            raise
        payload = legacy.unsign(token)  # an email sent before tokens carried a time
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    message_id, url = raw.split(" ", 1)
    return int(message_id), url


def track_links(body: str, data: EmailData) -> str:
    """Route http(s) links through signed redirects; the target URL is inside the token."""
    own = settings.PUBLIC_URL + "/email/"
    click_base = f"{settings.PUBLIC_URL}/email/c/"

    def replace(match: re.Match) -> str:
        prefix, quote, raw = match.groups()
        url = html.unescape(raw).strip()
        if not safe_url(url) or url.startswith(own):
            return match.group(0)
        token = click_token(data.message_id, with_utm(url, data))
        return f"{prefix}{quote}{click_base}{token}/{quote}"

    return _HREF.sub(replace, body)


# --- the whole email ---------------------------------------------------------------

_INLINER = css_inline.CSSInliner(
    keep_at_rules=True,  # media queries stay in <style> for clients that support them
    load_remote_stylesheets=False,  # a template must not make us fetch URLs
)

# The layout is the same for every email: it is rendered once with a marker in each
# slot, CSS-inlined once, and split at the markers. Each email then only fills the
# slots (escaped as the template would) — inlining the whole page per email cost
# more than everything else together. A template's own <style> is inlined into its
# body per email (css_inline.inline_fragment).
_SLOTS = ("subject", "preheader", "body", "site_name", "postal_address",
          "unsubscribe_url", "preferences_url", "view_in_browser_url")  # fmt: skip
_SLOT_MARK = re.compile(r"reengageslot(\d+)x")


@lru_cache(maxsize=1)
def _layout_shell() -> tuple[tuple[str, int | None], ...]:
    marks = {name: mark_safe(f"reengageslot{i}x") for i, name in enumerate(_SLOTS)}  # noqa: S308
    page = _INLINER.inline(render_to_string("campaigns/email/layout.html", marks))
    pieces: list[tuple[str, int | None]] = []
    position = 0
    for match in _SLOT_MARK.finditer(page):
        pieces.append((page[position : match.start()], int(match.group(1))))
        position = match.end()
    pieces.append((page[position:], None))
    found = {slot for _, slot in pieces if slot is not None}
    if found != set(range(len(_SLOTS))):
        raise RuntimeError("campaigns/email/layout.html must use every slot: " + ", ".join(_SLOTS))
    return tuple(pieces)


def _fill_layout(values: dict[str, str]) -> str:
    ordered = [values[name] for name in _SLOTS]
    return "".join(
        text + (ordered[slot] if slot is not None else "") for text, slot in _layout_shell()
    )


# HTML → text for the text part, when the template has none. A few regular
# expressions rather than an HTML parser: the body is our own rendered output, and
# a parser (html2text) cost ~1 ms per email, half the sending budget.
_DROP = re.compile(r"<(head|style|script|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_LINK = re.compile(r"<a\b[^>]*?\bhref\s*=\s*([\"'])(.*?)\1[^>]*>(.*?)</a\s*>", re.I | re.S)
_BREAK = re.compile(r"<br\s*/?>|</(?:tr|li|div)\s*>", re.IGNORECASE)
_BLOCK = re.compile(r"</?(?:p|h[1-6]|table|ul|ol|blockquote)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n\s*(?:\n\s*)+")


def _link_text(match: re.Match) -> str:
    url, label = html.unescape(match.group(2)).strip(), _TAG.sub("", match.group(3)).strip()
    if not url or url.startswith("#") or html.unescape(label) == url:
        return label or url
    return f"{label} ({url})" if label else url


def html_to_text(body: str) -> str:
    text = _DROP.sub("", body)
    # A line break in the HTML source is a space on screen (a heading written on
    # two lines is one line); only tags break lines in the text part. (Split and
    # joined: a regular expression for it tries every position of the body, ~40 % of
    # this function; the spaces it leaves are collapsed with the others below.)
    text = " ".join([piece.strip(" \t") for piece in text.replace("\r", "\n").split("\n")])
    text = _LINK.sub(_link_text, text)
    text = _BREAK.sub("\n", text)
    text = _BLOCK.sub("\n\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def text_footer(footer: dict[str, str]) -> str:
    return (
        f"--\nYou receive this email from {footer['site_name']}.\n"
        f"Unsubscribe: {footer['unsubscribe_url']}\n"
        f"Email preferences: {footer['preferences_url']}\n"
        f"View in browser: {footer['view_in_browser_url']}\n\n"
        f"{footer['postal_address']}"
    ).strip()


@dataclass
class RenderedEmail:
    subject: str
    html: str
    text: str
    unsubscribe_url: str = ""


def render_email(template, data: EmailData, *, tracking: bool = True) -> RenderedEmail:
    """Subject, HTML (layout, footer, inlined CSS, tracked links) and text for one person.

    Within one budget (EMAIL_RENDER_MAX_BYTES, EMAIL_RENDER_MAX_SECONDS), at preview,
    test send and send time alike: past it, RenderLimitExceeded names the limit."""
    with render_budget() as budget:
        rendered = _render_email(template, data, tracking=tracking)
        budget.check_time()
    size = len(rendered.html) + len(rendered.text) + len(rendered.subject)
    if size > settings.EMAIL_RENDER_MAX_BYTES:
        raise RenderLimitExceeded(
            f"The email is larger than EMAIL_RENDER_MAX_BYTES ({settings.EMAIL_RENDER_MAX_BYTES}"
            " bytes)."
        )
    return rendered


def _render_email(template, data: EmailData, *, tracking: bool) -> RenderedEmail:
    parts = compiled(template)
    links = links_for(data.message_id)
    values = template_context(data, links)
    # Subject, preheader and text are plain text (the layout escapes the preheader);
    # only the HTML body is autoescaped.
    plain = Context(values, autoescape=False)
    # Not collapsed: a line break that data smuggles in must reach the header check.
    subject = parts.subject.render(plain).strip()
    preheader = " ".join(parts.preheader.render(plain).split())
    body = parts.html.render(Context(values, autoescape=True))
    footer = {
        "site_name": data.site_name,
        "postal_address": data.postal_address,
        "unsubscribe_url": links.unsubscribe_url,
        "preferences_url": links.preferences_url,
        "view_in_browser_url": links.view_in_browser_url,
    }
    html_body = body
    if parts.has_style:
        html_body = css_inline.inline_fragment(
            body, "", keep_at_rules=True, load_remote_stylesheets=False
        )
    page = _fill_layout(
        {
            "subject": _escape(subject),
            "preheader": _escape(preheader),
            "body": html_body,
            "site_name": _escape(data.site_name),
            "postal_address": linebreaksbr(data.postal_address, autoescape=True),
            "unsubscribe_url": _escape(links.unsubscribe_url),
            "preferences_url": _escape(links.preferences_url),
            "view_in_browser_url": _escape(links.view_in_browser_url),
        }
    )
    if tracking and data.click_tracking:
        page = track_links(page, data)
    if tracking and data.open_tracking:
        pixel = (
            f'<img src="{settings.PUBLIC_URL}/email/o/{message_token(data.message_id, OPEN_SALT)}/"'
            ' width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
        )
        page = page.replace("</body>", pixel + "</body>", 1)
    text = parts.text.render(plain) if parts.text else ""
    if not text.strip():
        text = html_to_text(body)
    text = text.strip() + "\n\n" + text_footer(footer)
    return RenderedEmail(
        subject=subject, html=page, text=text + "\n", unsubscribe_url=links.unsubscribe_url
    )
