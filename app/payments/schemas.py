from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, computed_field

from app.orders.states import OrderStatus
from app.payments.states import ORDER_STATUS_FOR
from app.providers.base import PaymentStatus
from app.providers.registry import PLUGINS
from app.validation import Text

EXAMPLE_PROVIDER = PLUGINS[0].name


class PaymentSessionRequest(BaseModel):
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
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$", description="Provider page language")
    bank_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Preselect the payer's bank at the provider",
    )


class PaymentSessionResponse(BaseModel):
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

    session_id: uuid.UUID = Field(validation_alias="id")
    provider: str
    provider_session_id: str
    payment_status: PaymentStatus = Field(
        validation_alias="status", description="The payment's own, provider-neutral status"
    )
    connect_url: str = Field(description="The provider's hosted page: send the payer there")
    expires_at: datetime

    @computed_field(description="What this session means for the order (the order's vocabulary)")  # type: ignore[prop-decorator]
    @property
    def status(self) -> OrderStatus:
        return ORDER_STATUS_FOR[self.payment_status]


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool


class SyncResponse(BaseModel):
    order_id: str
    status: OrderStatus = Field(description="The order's status after the sync")
    session_status: OrderStatus = Field(description="What the latest session means for the order")
    payment_status: PaymentStatus = Field(description="The latest session's provider-neutral status")
    changed: bool = Field(description="Whether the order moved")
    refunds_synced: int = Field(default=0, description="How many of the order's open refunds were read too")


class RefundCreate(BaseModel):
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


class RefundOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
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
            ]
        },
    )

    id: uuid.UUID
    order_id: uuid.UUID
    payment_session_id: uuid.UUID = Field(description="The paid session the money is given back from")
    provider: str
    provider_refund_id: str | None = Field(
        description="The provider's refund session id (none while reserved)"
    )
    amount: int = Field(description="Minor units")
    currency: str
    reason: str | None
    status: PaymentStatus = Field(
        description="`creating` (reserved), `open` (the merchant must confirm it at the provider), "
        "`processing`, `succeeded` (the money went back), `failed`, `cancelled`, `expired`, `needs_review`"
    )
    provider_status: str | None = Field(description="The provider's own status, as read")
    transfer_state: str | None
    review_reason: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class RefundList(BaseModel):
    items: list[RefundOut]


class CapabilitiesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    pay_in: bool
    refund: bool
    payout: bool
    cancel: bool


class ProviderOut(BaseModel):
    name: str = Field(description="What to send as `provider` when opening a payment session")
    display_name: str = Field(description="A name to show the payer")
    default: bool = Field(description="Used when a payment-session request names no provider")
    capabilities: CapabilitiesOut


class ProviderList(BaseModel):
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

    items: list[ProviderOut]
