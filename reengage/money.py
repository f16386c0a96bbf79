"""Money as every screen and email writes it: "€39.00", "$1,234.50", "CHF 39.00".

One formatter for the email's HTML and text parts, its products block, and the
report's revenue, so nothing says "39.00 EUR" in one place and "(EUR 39)" in
another.
"""

from __future__ import annotations

from decimal import Decimal

# Symbols written before the amount; other ISO codes as the code and a space.
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹"}


def format_money(amount: Decimal | None, currency: str = "") -> str:
    """Write `amount` as €1,234.50, CHF 39.00, or 39.00 without a currency ("" if None)."""
    if amount is None:
        return ""
    number = f"{amount:,.2f}"
    code = currency.strip().upper()
    if not code:
        return number
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{symbol}{number}" if symbol else f"{code} {number}"
