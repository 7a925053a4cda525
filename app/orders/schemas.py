"""Order request and response bodies.

Requests forbid unknown fields: a client that sends a price, an amount or a total gets a 422 naming
the field, rather than the false impression that its number was used. Totals always come from the
catalog.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictInt, computed_field, field_validator

from app.catalog.schemas import CurrencyCode, Sku
from app.models import Order, OrderTransition, PaymentSession, TransitionSource
from app.money import format_amount
from app.orders.states import OrderStatus
from app.payments.states import ORDER_STATUS_FOR
from app.providers.base import PaymentStatus
from app.validation import Text

MAX_LINES = 50
MAX_QUANTITY = 1000

_ORDER_EXAMPLE: dict[str, Any] = {
    "items": [{"sku": "espresso-1kg", "quantity": 2}, {"sku": "gooseneck-kettle", "quantity": 1}],
    "customer": {
        "name": "Camille Martin",
        "email": "camille@example.com",
        "phone": "+33 6 12 34 56 78",
        "address": {
            "street": "Rue de Rivoli",
            "number": "12",
            "zip": "75004",
            "city": "Paris",
            "country": "FR",
        },
    },
    "currency": "EUR",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderItemIn(_Strict):
    """One line of the order: a SKU and how many."""

    sku: Sku
    # The configured MAX_LINE_QUANTITY (at most this) is checked when the order is priced.
    quantity: StrictInt = Field(
        ge=1,
        le=MAX_QUANTITY,
        description=f"1 to MAX_LINE_QUANTITY units (10 unless configured, at most {MAX_QUANTITY})",
    )


class AddressIn(_Strict):
    """The customer's postal address."""

    street: Annotated[str, Text(200, min_length=1)] = Field(description="Street name")
    number: Annotated[str, Text(20)] | None = Field(default=None, description="House number")
    complement: Annotated[str, Text(200)] | None = Field(default=None, description="Floor, building, c/o...")
    zip: Annotated[str, Text(20, min_length=1)] = Field(description="Postal code")
    city: Annotated[str, Text(100, min_length=1)] = Field(description="City")
    country: str = Field(
        pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code, e.g. FR (lower case is accepted)"
    )

    @field_validator("country", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class CustomerIn(_Strict):
    """Who buys: kept with the order and given to the provider as the payer."""

    # Lengths are the orders table's columns (customer_name, customer_email, ...).
    name: Annotated[str, Text(200, min_length=1)] = Field(description="The payer's full name")
    email: EmailStr = Field(max_length=320, description="Where the merchant reaches the customer")
    phone: str | None = Field(
        default=None,
        pattern=r"^\+?[0-9 ().-]{4,40}$",
        max_length=40,
        description="Digits, spaces, `+ ( ) . -`",
    )
    company: Annotated[str, Text(200, min_length=1)] | None = Field(
        default=None, description="For a business customer"
    )
    address: AddressIn | None = Field(default=None, description="Postal address, when the shop asks for one")


class OrderCreate(_Strict):
    """An order: SKUs and quantities only. One line per SKU; prices come from the catalog."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ORDER_EXAMPLE]})

    items: list[OrderItemIn] = Field(
        min_length=1, max_length=MAX_LINES, description=f"1 to {MAX_LINES} lines, each SKU once"
    )
    customer: CustomerIn = Field(description="Who buys")
    currency: CurrencyCode = Field(description="Every SKU must be priced in it")


class OrderLineOut(BaseModel):
    """A line of the order, priced from the catalog when the order was placed."""

    sku: str = Field(description="The product's SKU")
    name: str = Field(description="The product's name when the order was placed")
    quantity: int = Field(description="Units ordered")
    unit_amount: int = Field(description="Unit price in minor units, as priced when the order was placed")
    unit_price: str = Field(description="Unit price as a decimal string")
    line_amount: int = Field(description="quantity x unit_amount, minor units")
    line_total: str = Field(description="Line amount as a decimal string")

    @classmethod
    def of(cls, line: PricedLine, currency: str) -> OrderLineOut:
        return cls(
            sku=line.sku,
            name=line.name,
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            unit_price=format_amount(line.unit_amount, currency),
            line_amount=line.line_amount,
            line_total=format_amount(line.line_amount, currency),
        )


class PricedLine(Protocol):
    """A stored order line, or one about to be stored: what its answer is made of."""

    @property
    def sku(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit_amount(self) -> int: ...
    @property
    def line_amount(self) -> int: ...


class AddressOut(BaseModel):
    """The customer's postal address."""

    street: str = Field(description="Street name")
    number: str | None = Field(default=None, description="House number")
    complement: str | None = Field(default=None, description="Floor, building, c/o...")
    zip: str = Field(description="Postal code")
    city: str = Field(description="City")
    country: str = Field(description="ISO 3166-1 alpha-2 code")


class CustomerOut(BaseModel):
    """The customer as given when the order was placed."""

    name: str = Field(description="Full name")
    email: str = Field(description="Email address")
    phone: str | None = Field(description="Phone number, if given")
    company: str | None = Field(description="Company, if given")
    address: AddressOut | None = Field(description="Postal address, if given")


class PaymentSummary(BaseModel):
    """The order's most recent payment session."""

    model_config = ConfigDict(from_attributes=True)

    session_id: uuid.UUID = Field(validation_alias="id", description="Our id of the session")
    provider: str = Field(description="The provider the session is open at")
    payment_status: PaymentStatus = Field(
        validation_alias="status", description="The payment's own, provider-neutral status"
    )
    provider_status: str | None = Field(description="The provider's own status, verbatim")
    transfer_state: str | None = Field(description="The provider's transfer state, verbatim")
    connect_url: str | None = Field(description="The provider's hosted page for the payer")
    expires_at: datetime = Field(description="When the session lapses unpaid")

    @computed_field(description="What this session means for the order (the order's vocabulary)")  # type: ignore[prop-decorator]
    @property
    def status(self) -> OrderStatus | None:
        return ORDER_STATUS_FOR.get(self.payment_status)


class TransitionOut(BaseModel):
    """One move of the order's state, as recorded."""

    model_config = ConfigDict(from_attributes=True)

    from_status: OrderStatus | None = Field(description="The state before; null for the first")
    to_status: OrderStatus = Field(description="The state after")
    source: TransitionSource = Field(description="Which path moved the order")
    provider_status: str | None = Field(description="The provider's status that moved it, verbatim")
    transfer_state: str | None = Field(description="The provider's transfer state then, verbatim")
    reason: str | None = Field(description="Why, when the writer says (e.g. an amount mismatch)")
    note: str | None = Field(default=None, description="What the operator wrote, when one resolved a review")
    payment_session_id: uuid.UUID | None = Field(description="The payment session it came from, if any")
    created_at: datetime = Field(description="When it was recorded")


_ORDER_OUT_EXAMPLE: dict[str, Any] = {
    "id": "6f1c2a9e-4b1d-4c55-9a39-0b8a3f7d2e11",
    "reference": "ORD-7K3F9Q2M",
    "status": "pending",
    "currency": "EUR",
    "total_amount": 11800,
    "amount": "118.00",
    "lines": [
        {
            "sku": "espresso-1kg",
            "name": "Espresso beans, 1 kg",
            "quantity": 2,
            "unit_amount": 2450,
            "unit_price": "24.50",
            "line_amount": 4900,
            "line_total": "49.00",
        },
        {
            "sku": "gooseneck-kettle",
            "name": "Gooseneck kettle, 1 l",
            "quantity": 1,
            "unit_amount": 6900,
            "unit_price": "69.00",
            "line_amount": 6900,
            "line_total": "69.00",
        },
    ],
    "customer": {
        "name": "Camille Martin",
        "email": "camille@example.com",
        "phone": "+33 6 12 34 56 78",
        "company": None,
        "address": {
            "street": "Rue de Rivoli",
            "number": "12",
            "complement": None,
            "zip": "75004",
            "city": "Paris",
            "country": "FR",
        },
    },
    "payment": None,
    "transitions": None,
    "created_at": "2026-11-21T10:15:00.123456Z",
    "updated_at": "2026-11-21T10:15:00.123456Z",
}


class OrderOut(BaseModel):
    """An order, its lines, its customer and its latest payment session."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ORDER_OUT_EXAMPLE]})

    id: str = Field(description="The order's id (a UUID)")
    reference: str = Field(description="Human reference, also the bank transfer's communication")
    status: OrderStatus = Field(description="Where the order stands")
    currency: str = Field(description="ISO 4217 code")
    total_amount: int = Field(description="Total in minor units, computed from the catalog")
    amount: str = Field(description='The total as a decimal string, e.g. "118.00"')
    lines: list[OrderLineOut] = Field(description="The order's lines")
    customer: CustomerOut = Field(description="Who buys")
    payment: PaymentSummary | None = Field(
        default=None, description="The latest payment session, null before the first one"
    )
    transitions: list[TransitionOut] | None = Field(
        default=None, description="State history, oldest first; only with the operator key, null otherwise"
    )
    created_at: datetime = Field(description="When the order was placed")
    updated_at: datetime = Field(description="When it last changed")

    @classmethod
    def of(
        cls,
        order: Order,
        *,
        payment: PaymentSession | None = None,
        transitions: list[OrderTransition] | None = None,
    ) -> OrderOut:
        return cls(
            id=str(order.id),
            reference=order.reference,
            status=order.status,
            currency=order.currency,
            total_amount=order.total_amount,
            amount=format_amount(order.total_amount, order.currency),
            lines=[OrderLineOut.of(line, order.currency) for line in order.lines],
            customer=CustomerOut(
                name=order.customer_name,
                email=order.customer_email,
                phone=order.customer_phone,
                company=order.customer_company,
                address=AddressOut.model_validate(order.customer_address) if order.customer_address else None,
            ),
            payment=PaymentSummary.model_validate(payment) if payment else None,
            transitions=[TransitionOut.model_validate(t) for t in transitions]
            if transitions is not None
            else None,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class OrderCreated(OrderOut):
    """The order just placed, with its access token (returned only here)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_ORDER_OUT_EXAMPLE, "access_token": "ot_3q2l...kZ8"}]}
    )

    access_token: str = Field(
        description=(
            "Bearer token for GET /orders/{id} and the payment session. Returned once (and again on an "
            "Idempotency-Key replay); only its sha256 is stored with the order."
        )
    )


class OrderSummary(BaseModel):
    """An order in a list: no lines, customer or payment."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The order's id")
    reference: str = Field(description="Human reference, also the bank transfer's communication")
    status: OrderStatus = Field(description="Where the order stands")
    currency: str = Field(description="ISO 4217 code")
    total_amount: int = Field(description="Total in minor units")
    customer_name: str = Field(description="The customer's name")
    customer_email: str = Field(description="The customer's email")
    created_at: datetime = Field(description="When the order was placed")
    updated_at: datetime = Field(description="When it last changed")

    @computed_field(description='The total as a decimal string, e.g. "118.00"')  # type: ignore[prop-decorator]
    @property
    def amount(self) -> str:
        return format_amount(self.total_amount, self.currency)


class OrderPage(BaseModel):
    """A page of orders, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": _ORDER_OUT_EXAMPLE["id"],
                            "reference": _ORDER_OUT_EXAMPLE["reference"],
                            "status": "paid",
                            "currency": "EUR",
                            "total_amount": 11800,
                            "amount": "118.00",
                            "customer_name": "Camille Martin",
                            "customer_email": "camille@example.com",
                            "created_at": "2026-11-21T10:15:00.123456Z",
                            "updated_at": "2026-11-21T10:17:42.654321Z",
                        }
                    ],
                    "next_cursor": "MjAyNi0xMS0yMVQxMDoxNTowMC4xMjM0NTYrMDA6MDB8NmYxYzJhOWU",
                }
            ]
        }
    )

    items: list[OrderSummary] = Field(description="The orders")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class ReviewResolve(_Strict):
    """An operator's decision on an order in `needs_review`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"to": "paid", "note": "Payer sent 0.50 EUR too much; accepted"}]}
    )

    # Kept equal to app/orders/states.py REVIEW_RESOLUTIONS (a unit test checks).
    to: Literal["paid", "failed"] = Field(
        description="`paid`: the money is accepted as it came; `failed`: none of it is kept and the "
        "shopper may pay again"
    )
    note: Annotated[str, Text(1000, min_length=1)] = Field(description="Why: kept with the transition")


class ReviewResolved(BaseModel):
    """The operator's decision, recorded."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": _ORDER_OUT_EXAMPLE["id"],
                    "status": "paid",
                    "transition": {
                        "from_status": "needs_review",
                        "to_status": "paid",
                        "source": "operator",
                        "provider_status": None,
                        "transfer_state": None,
                        "reason": "review resolved by an operator: paid 11850, expected 11800",
                        "note": "Payer sent 0.50 EUR too much; accepted",
                        "payment_session_id": None,
                        "created_at": "2026-11-21T11:02:00.000000Z",
                    },
                }
            ]
        }
    )

    order_id: uuid.UUID = Field(description="The order")
    status: OrderStatus = Field(description="Its state now")
    transition: TransitionOut = Field(description="The transition the resolution recorded")
