"""Money: integer minor units in the database, Decimal in Python, one table of supported currencies."""

from __future__ import annotations

from decimal import Decimal, DecimalException

# ISO 4217 code -> number of minor-unit digits. The providers we speak to take these.
CURRENCY_EXPONENTS: dict[str, int] = {"EUR": 2, "GBP": 2, "PLN": 2}


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise ValueError(f"unsupported currency {currency!r}") from None


def to_decimal(minor_units: int, currency: str) -> Decimal:
    """12345, "EUR" -> Decimal("123.45")."""
    return Decimal(minor_units).scaleb(-exponent(currency))


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Decimal("123.45"), "EUR" -> 12345; raises ValueError for sub-minor precision."""
    if not amount.is_finite():
        raise ValueError(f"{amount} is not an amount of money")
    try:
        scaled = amount.scaleb(exponent(currency))
        exact = scaled == scaled.to_integral_value()
    except DecimalException:  # NaN, infinities, exponents too large to scale
        exact = False
    if not exact:
        raise ValueError(f"{amount} is not a whole number of {currency} minor units")
    return int(scaled)


def format_amount(minor_units: int, currency: str) -> str:
    """12345, "EUR" -> "123.45" (exactly the currency's digits, as providers expect)."""
    digits = exponent(currency)
    return f"{to_decimal(minor_units, currency):.{digits}f}"
