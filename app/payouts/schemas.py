"""Payout request and response bodies.

A beneficiary's IBAN and BIC are checked with `schwifty` (country format, length, check digits),
so a typo is a 422 naming the field and nothing is written or sent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictInt, field_validator, model_validator
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from app.catalog.schemas import CurrencyCode
from app.models import Payout, PayoutTransition, TransitionSource
from app.providers.base import PayoutDelivery, PayoutStatus
from app.providers.registry import PLUGINS

EXAMPLE_PROVIDER = PLUGINS[0].name
DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600  # a week for the payee to give their account
MAX_EXPIRY_SECONDS = 30 * 24 * 3600
# Printable text only: these end up on a bank statement.
_TEXT = r"^[^\x00-\x1f\x7f]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PayeeIn(_Strict):
    """Who is paid, when the provider collects their account itself."""

    name: str = Field(min_length=1, max_length=140, pattern=_TEXT, description="The payee's name")
    email: EmailStr | None = Field(default=None, max_length=320, description="Needed for `delivery: email`")
    phone: str | None = Field(
        default=None,
        pattern=r"^\+[1-9][0-9]{6,14}$",
        description='E.164, e.g. "+33612345678"; needed for `delivery: sms`',
    )


class BeneficiaryIn(_Strict):
    """An account the merchant has already verified: the money goes there at once."""

    name: str = Field(min_length=1, max_length=140, pattern=_TEXT, description="The account holder")
    iban: str = Field(max_length=64, description="Spaces allowed; checked (country format, check digits)")
    bic: str = Field(max_length=16, description="8 or 11 characters; checked")

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        try:
            return str(IBAN(value).compact)
        except (SchwiftyException, ValueError) as exc:
            raise ValueError(f"not a valid IBAN: {exc}") from None

    @field_validator("bic")
    @classmethod
    def _bic(cls, value: str) -> str:
        try:
            return str(BIC(value).compact)
        except (SchwiftyException, ValueError) as exc:
            raise ValueError(f"not a valid BIC: {exc}") from None


_LINK_EXAMPLE: dict[str, Any] = {
    "amount": 2699,
    "currency": "EUR",
    "reference": "SELLER-42-2026-11",
    "communication": "Demo Shop payout November",
    "payee": {"name": "John Doe", "email": "john@example.com"},
    "delivery": "link",
}
_BENEFICIARY_EXAMPLE: dict[str, Any] = {
    "amount": 27300,
    "currency": "EUR",
    "reference": "SELLER-7-2026-11",
    "communication": "Demo Shop payout November",
    "beneficiary": {
        "name": "Julien Lefebre",
        "iban": "FR14 2004 1010 0505 0001 3M02 606",
        "bic": "PSSTFRPPXXX",
    },
}


class PayoutCreate(_Strict):
    """A payout. Without `beneficiary`, the provider sends the payee a page where they give their
    account (`delivery` says how the page reaches them); with a verified `beneficiary`, the transfer
    starts at once."""

    model_config = ConfigDict(json_schema_extra={"examples": [_LINK_EXAMPLE, _BENEFICIARY_EXAMPLE]})

    provider: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="An enabled provider that can pay out; by default DEFAULT_PROVIDER when it can, "
        "else the first enabled one that can",
    )
    amount: StrictInt = Field(gt=0, le=10**15, description="Minor units (cents)")
    currency: CurrencyCode = Field(description="ISO 4217 code of `amount`")
    reference: str = Field(
        min_length=1, max_length=64, pattern=_TEXT, description="Your own reference, to find it again"
    )
    communication: str = Field(
        min_length=1, max_length=140, pattern=_TEXT, description="Shown on the payee's bank statement"
    )
    payee: PayeeIn | None = Field(
        default=None, description="Who is paid; required without a beneficiary (the provider contacts them)"
    )
    delivery: PayoutDelivery = Field(
        default=PayoutDelivery.LINK,
        description="Without a beneficiary: `link` (you pass `payee_url` on), `email` or `sms` "
        "(the provider sends it)",
    )
    expiry_seconds: int = Field(
        default=DEFAULT_EXPIRY_SECONDS,
        ge=60,
        le=MAX_EXPIRY_SECONDS,
        description="Without a beneficiary: how long the payee's page stays valid",
    )
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$", description="Of the payee's page")
    beneficiary: BeneficiaryIn | None = Field(
        default=None, description="A verified account: the transfer starts at once, no payee page"
    )

    @model_validator(mode="after")
    def _scenario(self) -> PayoutCreate:
        if self.beneficiary is not None:
            extra = sorted({"delivery", "expiry_seconds"} & self.model_fields_set)
            if extra:
                raise ValueError(f"{' and '.join(extra)} apply only when no beneficiary is given")
            return self
        if self.payee is None:
            raise ValueError("payee is required without a beneficiary: the provider asks them for an account")
        if self.delivery is PayoutDelivery.EMAIL and self.payee.email is None:
            raise ValueError("payee.email is required for delivery by email")
        if self.delivery is PayoutDelivery.SMS and self.payee.phone is None:
            raise ValueError("payee.phone is required for delivery by SMS")
        return self


class PayeeOut(BaseModel):
    """Who is paid, as given."""

    name: str | None = Field(description="The payee's name")
    email: str | None = Field(description="Where the provider emails the payee's page")
    phone: str | None = Field(description="Where the provider texts the payee's page")


class BeneficiaryOut(BaseModel):
    """The verified account the payout went to."""

    name: str = Field(description="The account holder")
    iban: str = Field(description="The account's IBAN, normalised")
    bic: str | None = Field(description="The bank's BIC")


class PayoutTransitionOut(BaseModel):
    """One move of the payout's status, as recorded."""

    model_config = ConfigDict(from_attributes=True)

    from_status: PayoutStatus | None = Field(description="The status before; null for the first")
    to_status: PayoutStatus = Field(description="The status after")
    source: TransitionSource = Field(description="Which path moved the payout")
    provider_status: str | None = Field(description="The provider's status that moved it, verbatim")
    transfer_state: str | None = Field(description="The provider's transfer state then, verbatim")
    reason: str | None = Field(description="Why, when the writer says")
    created_at: datetime = Field(description="When it was recorded")


_PAYOUT_OUT_EXAMPLE: dict[str, Any] = {
    "id": "3f2b8c1e-5d4a-4b8e-9c1f-2a6d7e8f9a0b",
    "provider": EXAMPLE_PROVIDER,
    "provider_payout_id": "23e8f09e2cab4752b8c4c3f00bf9f45c",
    "reference": "SELLER-42-2026-11",
    "amount": 2699,
    "currency": "EUR",
    "communication": "Demo Shop payout November",
    "status": "awaiting_payee",
    "provider_status": None,
    "transfer_state": None,
    "payee": {"name": "John Doe", "email": "john@example.com", "phone": None},
    "delivery": "link",
    "payee_url": "https://connect.example.com/v2/gff0f101-601d-4c2c-96f9-f6d7a6089578",
    "expires_at": "2026-11-28T10:30:00+00:00",
    "beneficiary": None,
    "review_reason": None,
    "last_error": None,
    "transitions": None,
    "created_at": "2026-11-21T10:30:00+00:00",
    "updated_at": "2026-11-21T10:30:01+00:00",
}


class PayoutOut(BaseModel):
    """A payout: money from the merchant's payout account to a payee."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PAYOUT_OUT_EXAMPLE]})

    id: uuid.UUID = Field(description="The payout's id")
    provider: str = Field(description="The provider paying it out")
    provider_payout_id: str | None = Field(
        description="The provider's id for the payout (none while reserved)"
    )
    reference: str = Field(description="The merchant's own reference")
    amount: int = Field(description="Minor units")
    currency: str = Field(description="ISO 4217 code")
    communication: str = Field(description="Shown on the payee's bank statement")
    status: PayoutStatus = Field(
        description="`creating` (reserved), `awaiting_payee` (send the payee `payee_url`), "
        "`account_received`, `initiated` (the transfer is on its way), `paid`, `failed`, `cancelled`, "
        "`expired` (the payee never gave an account), `needs_review`"
    )
    provider_status: str | None = Field(description="The provider's own status, verbatim")
    transfer_state: str | None = Field(description="The provider's transfer state, verbatim")
    payee: PayeeOut | None = Field(description="Who is paid, when given")
    delivery: PayoutDelivery | None = Field(description="How the payee's page reaches them (no beneficiary)")
    payee_url: str | None = Field(description="The provider's page where the payee gives their account")
    expires_at: datetime | None = Field(description="Until when the payee's page is valid")
    beneficiary: BeneficiaryOut | None = Field(description="The verified beneficiary, when one was given")
    review_reason: str | None = Field(description="Why the payout is `needs_review`, for an operator")
    last_error: str | None = Field(description="The last error met creating or reading it")
    transitions: list[PayoutTransitionOut] | None = Field(
        default=None, description="Status history, oldest first (GET /payouts/{id} only)"
    )
    created_at: datetime = Field(description="When it was requested")
    updated_at: datetime = Field(description="When it last changed")

    @classmethod
    def of(cls, payout: Payout, transitions: list[PayoutTransition] | None = None) -> PayoutOut:
        has_payee = payout.payee_name or payout.payee_email or payout.payee_phone
        return cls(
            id=payout.id,
            provider=payout.provider,
            provider_payout_id=payout.provider_payout_id,
            reference=payout.reference,
            amount=payout.amount,
            currency=payout.currency,
            communication=payout.communication,
            status=payout.status,
            provider_status=payout.provider_status,
            transfer_state=payout.transfer_state,
            payee=PayeeOut(name=payout.payee_name, email=payout.payee_email, phone=payout.payee_phone)
            if has_payee
            else None,
            delivery=payout.delivery,
            payee_url=payout.payee_url,
            expires_at=payout.expires_at,
            beneficiary=BeneficiaryOut(
                name=payout.beneficiary_name, iban=payout.beneficiary_iban, bic=payout.beneficiary_bic
            )
            if payout.beneficiary_name and payout.beneficiary_iban
            else None,
            review_reason=payout.review_reason,
            last_error=payout.last_error,
            transitions=[PayoutTransitionOut.model_validate(t) for t in transitions]
            if transitions is not None
            else None,
            created_at=payout.created_at,
            updated_at=payout.updated_at,
        )


class PayoutPage(BaseModel):
    """A page of payouts, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_PAYOUT_OUT_EXAMPLE], "next_cursor": "MjAyNi0xMS0yMVQxMDozMDow..."}]
        }
    )

    items: list[PayoutOut] = Field(description="The payouts")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class PayoutSyncResponse(BaseModel):
    """What the provider said about the payout, and what it changed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "changed": True,
                    "payout": {
                        **_PAYOUT_OUT_EXAMPLE,
                        "status": "paid",
                        "provider_status": "payment_created",
                        "transfer_state": "completed",
                    },
                }
            ]
        }
    )

    changed: bool = Field(description="Whether the payout moved")
    payout: PayoutOut = Field(description="The payout as it stands now")


class PayoutCallbackResult(BaseModel):
    """The payee's return, for a client that does not ask for HTML."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"payout_id": _PAYOUT_OUT_EXAMPLE["id"], "status": "initiated"}]}
    )

    payout_id: uuid.UUID = Field(description="The payout the link belongs to")
    status: PayoutStatus = Field(description="Where it stands, as the provider just said")
