"""The plug-in contract between the payments core and each provider, in provider-neutral terms.

A provider package (`app/providers/<name>/`) owns its settings, transport, wire payloads, status
table, webhook verification and return parsing, and offers the core a `Provider`. The core never
names a provider; it speaks `PaymentStatus` (and a payout's `PayoutStatus`), `PaymentSnapshot`,
`WebhookRequest` and `ReturnHint`.

This module imports nothing from `app.orders` or `app.payments` (a test enforces it): a payment
status describes money moving (a pay-in, a refund, a payout), never an order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict


class PaymentStatus(StrEnum):
    """Where one payment (pay-in session, refund or payout) stands, whoever the provider is."""

    CREATING = "creating"  # reserved locally; the provider has not confirmed it yet (never mapped)
    OPEN = "open"  # at the provider, waiting for the payer (or payee) to act
    PROCESSING = "processing"  # authorised, the money has not moved yet: do not ship
    SUCCEEDED = "succeeded"  # the money moved
    FAILED = "failed"  # rejected; for some providers a later success on the same payment may follow
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NEEDS_REVIEW = "needs_review"  # the provider reports something a person must look at


class PaymentKind(StrEnum):
    PAY_IN = "pay_in"
    REFUND = "refund"
    PAYOUT = "payout"


class PayoutStatus(StrEnum):
    """Where one payout (money sent from the merchant to a payee) stands, whoever the provider is.

    Finer than `PaymentStatus`: a payout may first wait for its payee to give (and prove) the
    account the money goes to, which no pay-in does.
    """

    CREATING = "creating"  # reserved locally; the provider has not confirmed it yet (never mapped)
    AWAITING_PAYEE = "awaiting_payee"  # the payee has not given the account to pay yet
    ACCOUNT_RECEIVED = "account_received"  # the payee gave their account; no transfer created yet
    INITIATED = "initiated"  # the transfer is created and on its way, not executed yet
    PAID = "paid"  # the transfer is executed: the money left the merchant's account
    FAILED = "failed"  # refused or rejected; the provider may still retry it on the same payout
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the payee never gave an account in time
    NEEDS_REVIEW = "needs_review"  # the provider reports something a person must look at


# What a payout's status means as a payment status (a payout is a payment of its own kind).
PAYMENT_STATUS_OF_PAYOUT: dict[PayoutStatus, PaymentStatus] = {
    PayoutStatus.CREATING: PaymentStatus.CREATING,
    PayoutStatus.AWAITING_PAYEE: PaymentStatus.OPEN,
    PayoutStatus.ACCOUNT_RECEIVED: PaymentStatus.PROCESSING,
    PayoutStatus.INITIATED: PaymentStatus.PROCESSING,
    PayoutStatus.PAID: PaymentStatus.SUCCEEDED,
    PayoutStatus.FAILED: PaymentStatus.FAILED,
    PayoutStatus.CANCELLED: PaymentStatus.CANCELLED,
    PayoutStatus.EXPIRED: PaymentStatus.EXPIRED,
    PayoutStatus.NEEDS_REVIEW: PaymentStatus.NEEDS_REVIEW,
}


class PayoutDelivery(StrEnum):
    """How the provider's page for the payee reaches them, when the payee gives their account."""

    LINK = "link"  # the merchant passes the URL on (redirect, its own email...)
    EMAIL = "email"  # the provider emails the payee
    SMS = "sms"  # the provider texts the payee


@dataclass(frozen=True)
class Capabilities:
    pay_in: bool = True
    refund: bool = False
    payout: bool = False
    cancel: bool = False


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
    state: str  # opaque token echoed back on the payer's return
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
class RefundRequest:
    """Give (part of) a settled pay-in back to its payer."""

    provider_session_id: str  # the provider's id of the paid session
    amount: Decimal  # major units, e.g. Decimal("10.00")
    currency: str
    communication: str  # shown on the payer's statement
    state: str  # opaque token echoed back in the refund's notifications


@dataclass(frozen=True)
class CreatedRefund:
    """The provider accepted the refund request: its own id for the refund and where it stands."""

    provider_refund_id: str
    raw_status: str
    status: PaymentStatus  # normalised by the adapter's refund status table


@dataclass(frozen=True)
class Beneficiary:
    """An account already verified by the merchant: the payout goes there with no payee step."""

    name: str
    iban: str  # electronic (compact) form, checked
    bic: str  # compact, checked


@dataclass(frozen=True)
class PayoutRequest:
    """Send money from the merchant's payout account to a payee.

    Without `beneficiary`, the provider collects the payee's account on its own page (`state` is
    echoed when the payee comes back to `redirect_uri`); with it, the transfer starts at once.
    """

    amount: Decimal  # major units, e.g. Decimal("26.99")
    currency: str
    communication: str  # shown on the payee's statement
    state: str  # opaque token echoed back on the payee's return and in notifications
    redirect_uri: str
    expiry_seconds: int  # how long the payee's page stays valid
    payee_name: str | None = None
    payee_email: str | None = None
    payee_phone: str | None = None  # E.164, e.g. "+33612345678"
    delivery: PayoutDelivery = PayoutDelivery.LINK
    beneficiary: Beneficiary | None = None
    language: str | None = None  # of the payee's page


@dataclass(frozen=True)
class CreatedPayout:
    """The provider accepted the payout: its own id for it, the payee's page, where it stands."""

    provider_payout_id: str
    payee_url: str | None  # where the payee gives their account (none once a beneficiary is given)
    status: PayoutStatus  # normalised by the adapter's payout status table
    raw_status: str | None = None
    transfer_state: str | None = None
    review_reason: str | None = None


@dataclass(frozen=True)
class PaymentSnapshot:
    """What the provider says about one payment right now."""

    provider: str
    provider_session_id: str
    status: PaymentStatus  # normalised by the adapter's status table
    raw_status: str
    transfer_state: str | None
    amount: Decimal | None
    currency: str | None
    communication: str | None
    kind: PaymentKind = PaymentKind.PAY_IN
    customer_id: str | None = None
    bank_id: str | None = None
    review_reason: str | None = None  # set when the status table itself says "needs review"
    raw: Mapping[str, Any] = field(default_factory=dict)
    # For a refund: the provider's id of the payment it gives money back from, when reported.
    refunded_session_id: str | None = None
    # For a payout: its own status (finer than `status`, which is its payment status).
    payout_status: PayoutStatus | None = None


@dataclass(frozen=True)
class WebhookRequest:
    """An incoming webhook as received, before anything parsed it: what verification works on."""

    method: str
    path: str
    headers: Mapping[str, str]
    raw_body: bytes


@dataclass(frozen=True)
class WebhookHint:
    """A verified delivery: which payment to look at.

    `snapshot` is set only by providers whose webhook body is authenticated with a secret shared
    with the merchant alone, so its content can be applied without reading the payment first.
    """

    delivery_id: str
    provider_session_id: str | None
    event_type: str | None
    content_type: str | None
    payload: Mapping[str, Any]
    snapshot: PaymentSnapshot | None = None


@dataclass(frozen=True)
class ReturnHint:
    """The payer's return from the provider's page: which session it claims to be, never its status."""

    state: str | None
    provider_session_id: str | None
    error: str | None = None  # e.g. the payer cancelled on the provider's page


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


class WebhookMalformed(WebhookRejected):
    """A delivery that passed authentication but whose content cannot be used or stored (not JSON,
    nested too deeply, NUL, an identifier too long...): refused as a bad request, not as forged."""


class ReturnRejected(Exception):
    """The payer's return does not carry what this provider sends back; nothing is looked up."""


class ProviderSettings(BaseSettings):
    """Base of each provider's own settings class (its own env prefix, read from `.env` too)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # The environment variable whose value enables the provider (e.g. its application id), named
    # when production starts with no provider enabled.
    enabled_by: ClassVar[str] = ""

    def is_configured(self) -> bool:
        """Whether enough is set for the provider to be enabled."""
        raise NotImplementedError

    def problems(self) -> list[str]:
        """What stops an enabled provider from running at all, sandbox included; empty when fine."""
        return []

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe for real money (everything `problems` reports and more);
        empty when fine."""
        raise NotImplementedError


@dataclass(frozen=True)
class ProviderContext:
    """What the core hands every adapter it builds."""

    http: httpx.AsyncClient
    production: bool
    callback_url: str  # where the payer comes back (PUBLIC_URL/callback)
    timeout_seconds: float
    max_retries: int


class Provider(Protocol):
    name: str
    capabilities: Capabilities

    async def create_session(self, request: SessionRequest) -> CreatedSession: ...

    async def get_payment(self, provider_session_id: str) -> PaymentSnapshot:
        """A pay-in, or a refund read by the provider's refund id (`kind` says which)."""
        ...

    async def create_payout(self, request: PayoutRequest) -> CreatedPayout:
        """Ask the provider to pay a payee out; never sent twice (the request is not idempotent).
        Raises ProviderError; a provider without `capabilities.payout` raises it with code
        `not_supported`, sending nothing."""
        ...

    async def get_payout(self, provider_payout_id: str) -> PaymentSnapshot:
        """A payout read by the provider's id for it: `kind` is PAYOUT and `payout_status` set.
        A provider without `capabilities.payout` raises ProviderError with code `not_supported`."""
        ...

    async def create_refund(self, request: RefundRequest) -> CreatedRefund:
        """Ask the provider to refund; never sent twice (the request is not idempotent). Raises
        ProviderError; a provider without `capabilities.refund` raises it with code `not_supported`."""
        ...

    def verify_webhook(self, request: WebhookRequest, now: datetime) -> WebhookHint:
        """Raise WebhookRejected unless the delivery is authentic and fresh."""
        ...

    def parse_return(self, query: Mapping[str, str]) -> ReturnHint:
        """Raise ReturnRejected when the query is not a return this provider sends."""
        ...


@dataclass(frozen=True)
class ReturnParameter:
    """A query parameter the provider adds when it sends the payer (or payee) back, for the API
    document; `state` is ours and documented once."""

    name: str
    description: str
    example: str


@dataclass(frozen=True)
class WebhookDocs:
    """How the provider signs its webhooks and what they carry, for the API document."""

    scheme: str  # the security scheme's name in the document, e.g. "AcmeSignature"
    header: str  # the header carrying the signature
    description: str  # what is signed, and what the service checks
    media_type: str  # the body's content type
    example: dict[str, Any]  # a body as the provider sends it (form fields or JSON)


@dataclass(frozen=True)
class ProviderPlugin:
    """One entry of the registry's list: how to configure and build one provider."""

    name: str
    settings_class: type[ProviderSettings]
    build: Callable[[Any, ProviderContext], Provider]  # (its settings, context) -> adapter
    capabilities: Capabilities
    # The provider's name for people (storefronts, operators); empty = `name`.
    display_name: str = ""
    # What the API document says of the provider's returns and webhooks.
    return_parameters: tuple[ReturnParameter, ...] = ()
    webhook_docs: WebhookDocs | None = None

    def __post_init__(self) -> None:
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)
