"""Money as every screen and email writes it, in the site's locale: "€39.00" and
"CHF 39.00" in English, "39,00 €" in German, "39,00 CHF" in French.

One formatter for the email's HTML and text parts, its products block, and the
report's revenue, so nothing says "39.00 EUR" in one place and "(EUR 39)" in
another. The locale's pattern (where the symbol goes, the separators) comes from
CLDR through Babel; `Site.locale` chooses it (default "en").
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal

DEFAULT_LOCALE = "en"
# CLDR writes an ISO code flush against the digits in English ("CHF39.00"): a space
# between them, as the locales that put the code after the amount do.
_CODE_THEN_DIGIT = re.compile(r"([A-Z]{3})(?=[\d-])")


def valid_locale(name: str) -> bool:
    """Whether Babel knows this locale ("en", "en_GB", "de_DE", "fr-CH", …)."""
    return _locale(name.replace("-", "_")) is not None


@lru_cache(maxsize=256)
def _locale(name: str) -> Locale | None:
    """Babel's Locale for a name, parsed once (every amount of every email needs it)."""
    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def format_money(amount: Decimal | None, currency: str = "", locale: str = "") -> str:
    """Write `amount` in `locale`'s way with its currency, or as a plain number with two
    decimals without one ("" if None). An unknown locale writes English."""
    if amount is None:
        return ""
    # The same prices come back in email after email (a shop's products, a cart's total
    # in one currency), and Babel's formatting is a sixth of a render: each amount is
    # written once. Keyed by the amount as written, not by value, so 0 and -0, or a
    # float and the Decimal it equals, are never taken for each other.
    key = (type(amount), str(amount), currency, locale)
    written = _written.get(key)
    if written is None:
        if len(_written) >= _WRITTEN_MAX:
            _written.clear()
        written = _written[key] = _format(amount, currency, locale)
    return written


_WRITTEN_MAX = 10_000
_written: dict[tuple, str] = {}


def _format(amount: Decimal, currency: str, locale: str) -> str:
    found = _locale((locale or DEFAULT_LOCALE).replace("-", "_")) or _locale(DEFAULT_LOCALE)
    code = currency.strip().upper()
    if not code:
        return format_decimal(amount, format="#,##0.00", locale=found)
    written = format_currency(amount, code, locale=found)
    written = written.replace("\xa0", " ").replace("\u202f", " ")
    return _CODE_THEN_DIGIT.sub(r"\1 ", written)
