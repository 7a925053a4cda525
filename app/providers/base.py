"""What every provider adapter offers the payment domain, in provider-neutral terms.

Domains depend on `Provider` only; each adapter (one per provider) turns these calls into its own
wire protocol and maps its own statuses onto `OrderStatus`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from app.orders.states import OrderStatus


@dataclass(frozen=True)
class Payer:
    name: str
    email: str
    phone: str | None = None
    company: str | None = None
    address: Mapping[str, Any] | None = None
    ip: str | None = None


@dataclass(frozen=True)
class SessionRequest:
    amount: Decimal  # major units, e.g. Decimal("273.50")
    currency: str
    communication: str  # the order reference; the provider shows it on the transfer
    state: str  # opaque token echoed back on the redirect and the webhook
    redirect_uri: str
    origin_uri: str
    payer: Payer
    expiry_seconds: int
    language: str | None = None
    country: str | None = None
    bank_id: str | None = None  # preselects the payer's bank at the provider


@dataclass(frozen=True)
class CreatedSession:
    provider_session_id: str
    connect_url: str


@dataclass(frozen=True)
class PaymentSnapshot:
    """What the provider says about a session right now, fetched from its API (the truth)."""

    provider: str
    provider_session_id: str
    status: OrderStatus  # normalised by the adapter's status table
    raw_status: str
    transfer_state: str | None
    amount: Decimal | None
    currency: str | None
    communication: str | None
    customer_id: str | None = None
    bank_id: str | None = None
    review_reason: str | None = None  # set when the status table itself says "needs review"
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookHint:
    """A verified delivery: which session to look at. Never what its status is."""

    delivery_id: str
    provider_session_id: str | None
    event_type: str | None
    content_type: str | None
    payload: Mapping[str, Any]


class ProviderError(Exception):
    """A provider call failed. `retryable` says whether trying again later may help."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        log_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.log_id = log_id
        self.retryable = retryable

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.http_status is not None:
            parts.append(f"http_status={self.http_status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.log_id:
            parts.append(f"log_id={self.log_id}")
        return " ".join(parts)


class WebhookRejected(Exception):
    """A webhook failed verification; `reason` is safe to log (no secrets, no body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Provider(Protocol):
    name: str

    async def create_session(self, request: SessionRequest) -> CreatedSession: ...

    async def get_payment(self, provider_session_id: str) -> PaymentSnapshot: ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookHint:
        """Raise WebhookRejected unless the delivery is authentic and fresh."""
        ...
