from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from app.orders.states import OrderStatus
from app.payments.states import ORDER_STATUS_FOR
from app.providers.base import PaymentStatus
from app.providers.registry import PLUGINS
from app.validation import Text

EXAMPLE_PROVIDER = PLUGINS[0].name


class PaymentSessionRequest(BaseModel):
    """Options for the payment session; every field may be omitted (or the whole body)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"provider": EXAMPLE_PROVIDER, "language": "fr", "bank_id": "ftecfr"}]
        },
    )

    provider: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="An enabled payment provider; DEFAULT_PROVIDER (or the first enabled one) when omitted",
    )
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2}$", description="Provider page language (ISO 639-1, e.g. `fr`)"
    )
    bank_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Preselect the payer's bank at the provider",
    )


class PaymentSessionResponse(BaseModel):
    """The order's payment session at the provider."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "session_id": "5b1c0a64-3f5e-4a53-9a57-0c1f2f6b1f11",
                    "provider": EXAMPLE_PROVIDER,
                    "provider_session_id": "b2bca2bcd3b64a32a7e5d6d9b0c1e2f3",
                    "status": "awaiting_payment",
                    "payment_status": "open",
                    "connect_url": "https://pay.example.com/v2/b2bca2bc",
                    "expires_at": "2026-11-21T10:30:00+00:00",
                }
            ]
        },
    )

    session_id: uuid.UUID = Field(validation_alias="id", description="Our id of the session")
    provider: str = Field(description="The provider the session is open at")
    provider_session_id: str = Field(description="The provider's id of the session")
    payment_status: PaymentStatus = Field(
        validation_alias="status", description="The payment's own, provider-neutral status"
    )
    connect_url: str = Field(description="The provider's hosted page: send the payer there")
    expires_at: datetime = Field(description="When the session lapses unpaid (a new one may then be opened)")

    @computed_field(description="What this session means for the order (the order's vocabulary)")  # type: ignore[prop-decorator]
    @property
    def status(self) -> OrderStatus:
        return ORDER_STATUS_FOR[self.payment_status]


class WebhookAck(BaseModel):
    """The acknowledgement of a verified, stored webhook delivery."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"received": True, "duplicate": False}]})

    received: bool = Field(description="Always true: the delivery is stored and will be processed")
    duplicate: bool = Field(description="True when this delivery id was stored before (a replay): ignored")


class SyncResponse(BaseModel):
    """What the provider said about the order's latest session, and what it changed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "5b1c0a64-3f5e-4a53-9a57-0c1f2f6b1f11",
                    "status": "paid",
                    "session_status": "paid",
                    "payment_status": "succeeded",
                    "changed": True,
                    "refunds_synced": 0,
                }
            ]
        }
    )

    order_id: str = Field(description="The order's id")
    status: OrderStatus = Field(description="The order's status after the sync")
    session_status: OrderStatus = Field(description="What the latest session means for the order")
    payment_status: PaymentStatus = Field(description="The latest session's provider-neutral status")
    changed: bool = Field(description="Whether the order moved")
    refunds_synced: int = Field(default=0, description="How many of the order's open refunds were read too")


class RefundCreate(BaseModel):
    """A refund request; the whole body may be omitted to refund everything left."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"amount": 1000, "reason": "one lamp returned"}, {}],
        },
    )

    amount: int | None = Field(
        default=None,
        gt=0,
        le=10**15,
        description="Minor units (cents) to give back; omitted = the rest of what was paid",
    )
    reason: Annotated[str, Text(140)] | None = Field(  # refunds.reason
        default=None, description="Kept with the refund, for operators"
    )
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="When given, must be the order's currency (a safety check; refunds never convert)",
    )


REFUND_EXAMPLE: dict[str, Any] = {
    "id": "0d6c8f5e-8a43-4f0e-a1d5-8c3f7f1f3b21",
    "order_id": "5b1c0a64-3f5e-4a53-9a57-0c1f2f6b1f11",
    "payment_session_id": "8e0f4c2a-1b7d-4d59-9f0e-2a6b1c3d4e5f",
    "provider": EXAMPLE_PROVIDER,
    "provider_refund_id": "c3d4e5f6a7b84c9d8e7f6a5b4c3d2e1f",
    "amount": 1000,
    "currency": "EUR",
    "reason": "one lamp returned",
    "status": "processing",
    "provider_status": "refund_accepted",
    "transfer_state": None,
    "review_reason": None,
    "last_error": None,
    "created_at": "2026-11-21T10:30:00+00:00",
    "updated_at": "2026-11-21T10:30:01+00:00",
}


class RefundOut(BaseModel):
    """A refund: a payment of its own, from the merchant back to the payer."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [REFUND_EXAMPLE]},
    )

    id: uuid.UUID = Field(description="The refund's id")
    order_id: uuid.UUID = Field(description="The order refunded")
    payment_session_id: uuid.UUID = Field(description="The paid session the money is given back from")
    provider: str = Field(description="The provider that took the payment, and refunds it")
    provider_refund_id: str | None = Field(
        description="The provider's refund session id (none while reserved)"
    )
    amount: int = Field(description="Minor units")
    currency: str = Field(description="ISO 4217 code, the order's")
    reason: str | None = Field(description="What the operator wrote, if anything")
    status: PaymentStatus = Field(
        description="`creating` (reserved), `open` (the merchant must confirm it at the provider), "
        "`processing`, `succeeded` (the money went back), `failed`, `cancelled`, `expired`, `needs_review`"
    )
    provider_status: str | None = Field(description="The provider's own status, as read")
    transfer_state: str | None = Field(description="The provider's transfer state, verbatim, when it has one")
    review_reason: str | None = Field(description="Why the refund is `needs_review`, for an operator")
    last_error: str | None = Field(description="The last error met creating or reading it")
    created_at: datetime = Field(description="When it was requested")
    updated_at: datetime = Field(description="When it last changed")


class RefundList(BaseModel):
    """An order's refunds, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [REFUND_EXAMPLE]}]})

    items: list[RefundOut] = Field(description="The refunds")


class CapabilitiesOut(BaseModel):
    """What the provider can do here."""

    model_config = ConfigDict(from_attributes=True)

    pay_in: bool = Field(description="Takes payments (payment sessions)")
    refund: bool = Field(description="Refunds a payment it took")
    payout: bool = Field(description="Pays a payee out")
    cancel: bool = Field(description="Cancels an open payment at the provider")


class ProviderOut(BaseModel):
    """An enabled payment provider."""

    name: str = Field(description="What to send as `provider` when opening a payment session")
    display_name: str = Field(description="A name to show the payer")
    default: bool = Field(description="Used when a payment-session request names no provider")
    capabilities: CapabilitiesOut = Field(description="What it can do")


class ProviderList(BaseModel):
    """The enabled providers, in the registry's order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "name": EXAMPLE_PROVIDER,
                            "display_name": PLUGINS[0].display_name,
                            "default": True,
                            "capabilities": {"pay_in": True, "refund": True, "payout": True, "cancel": True},
                        }
                    ]
                }
            ]
        }
    )

    items: list[ProviderOut] = Field(description="The providers")
