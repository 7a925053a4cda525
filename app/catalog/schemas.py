"""Catalog request and response bodies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, computed_field

from app.money import CURRENCY_EXPONENTS, format_amount
from app.validation import Text

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# 100 million in major units: far above any basket, and 50 lines x 1000 units x this stays well
# inside BIGINT and inside the integers a JavaScript client reads exactly.
MAX_UNIT_AMOUNT = 10_000_000_000


def check_currency(code: str) -> str:
    if code not in CURRENCY_EXPONENTS:
        supported = ", ".join(sorted(CURRENCY_EXPONENTS))
        raise ValueError(f"unsupported currency {code!r}; supported: {supported}")
    return code


CurrencyCode = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code in upper case, one of the supported currencies",
        examples=["EUR"],
    ),
    AfterValidator(check_currency),
]
Sku = Annotated[str, Field(pattern=SKU_PATTERN, description="Stock keeping unit", examples=["espresso-1kg"])]


class ProductUpsert(BaseModel):
    """A product's full description; PUT replaces every field."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "Espresso beans, 1 kg",
                    "description": "Single-origin, medium roast.",
                    "unit_amount": 2450,
                    "currency": "EUR",
                    "active": True,
                }
            ]
        },
    )

    name: Annotated[str, Text(200, min_length=1)] = Field(  # products.name
        description="Shown to the shopper and copied onto order lines"
    )
    description: Annotated[str, Text(2000, multiline=True)] = Field(
        default="", description="Longer text for the storefront; may span lines"
    )
    unit_amount: StrictInt = Field(
        gt=0, le=MAX_UNIT_AMOUNT, description="Price of one unit in minor units (cents): 2450 = 24.50 EUR"
    )
    currency: CurrencyCode
    active: StrictBool = Field(default=True, description="Inactive products are hidden and cannot be ordered")


PRODUCT_EXAMPLE: dict[str, Any] = {
    "sku": "espresso-1kg",
    "name": "Espresso beans, 1 kg",
    "description": "Single-origin, medium roast.",
    "unit_amount": 2450,
    "amount": "24.50",
    "currency": "EUR",
    "active": True,
}


class ProductOut(BaseModel):
    """A catalog product."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [PRODUCT_EXAMPLE]},
    )

    sku: str = Field(description="Stock keeping unit, the product's key")
    name: str = Field(description="Shown to the shopper")
    description: str = Field(description="Longer text for the storefront")
    unit_amount: int = Field(description="Price of one unit in minor units")
    currency: str = Field(description="ISO 4217 code of the price")
    active: bool = Field(description="Whether it can be ordered; the public list shows active products only")

    @computed_field(description='The same price as a decimal string, e.g. "24.50"')  # type: ignore[prop-decorator]
    @property
    def amount(self) -> str:
        return format_amount(self.unit_amount, self.currency)


class ProductList(BaseModel):
    """Active products, by name."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [PRODUCT_EXAMPLE]}]})

    items: list[ProductOut] = Field(description="The products")
