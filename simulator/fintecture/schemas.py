"""Request bodies of the Fintecture API, as validated by the simulator.

Unknown fields are accepted (the SDKs and the third-party profile each send their own extras);
the fields the simulator uses are checked. Validation errors become §11 errors
(`simulator.errors.validation_error`): `mandatory_field_missing` for a missing field,
`invalid_field` otherwise.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

_AMOUNT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?")
MAX_EXPIRY_SECONDS = 30 * 24 * 3600


def _amount(value: str) -> str:
    if not _AMOUNT.fullmatch(value) or Decimal(value) <= 0:
        raise ValueError('must be a decimal string greater than 0 with at most 2 decimals, e.g. "273.50"')
    return value


def _ip(value: str) -> str:
    ipaddress.ip_address(value)  # ValueError names the problem
    return value


Amount = Annotated[str, AfterValidator(_amount)]
IpAddress = Annotated[str, AfterValidator(_ip)]
Currency = Literal["EUR", "GBP", "PLN"]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
Communication = Annotated[str, StringConstraints(min_length=1, max_length=140)]
PaymentMethod = Literal["immediate_transfer", "smart_transfer", "bnpl"]
SessionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PsuAddress(_Open):
    street: str | None = None
    number: str | None = None
    complement: str | None = None
    zip: str | None = None
    city: str | None = None
    country: CountryCode | None = None


class PaymentMethodChoice(_Open):
    id: PaymentMethod
    order: int | None = None


class ConnectMeta(_Open):
    psu_name: str | None = Field(default=None, max_length=140)
    psu_email: Email | None = None
    psu_phone: str | None = None
    psu_phone_prefix: str | None = None
    psu_ip: IpAddress | None = None
    psu_company: str | None = None
    psu_incorporation: str | None = None
    psu_form: str | None = None
    psu_local_id: str | None = None
    psu_address: PsuAddress | None = None
    expiry: StrictInt | None = Field(default=None, ge=1, le=MAX_EXPIRY_SECONDS, description="Seconds")
    payment_methods: list[PaymentMethodChoice] | None = None


class BeneficiaryIn(_Open):
    name: str | None = None
    iban: str | None = None
    swift_bic: str | None = None


class ConnectAttributes(_Open):
    amount: Amount
    currency: Currency
    communication: Communication | None = None
    end_to_end_id: str | None = Field(default=None, max_length=140)
    execution_date: date | None = None
    beneficiary: BeneficiaryIn | None = None
    payment_method: PaymentMethod | None = Field(default=None, description="Third-party profile variant")
    scheme: str | None = None


class ConnectData(_Open):
    type: str | None = Field(default=None, description='Any value ("payments", "PIS", "SEPA", ...) or absent')
    attributes: ConnectAttributes


class ConnectBody(_Open):
    meta: ConnectMeta = Field(default_factory=ConnectMeta)
    data: ConnectData


class PayoutMeta(_Open):
    psu_name: str | None = Field(default=None, max_length=140)
    psu_email: Email | None = None
    psu_phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ().-]{4,40}$")] | None = None
    expiry: StrictInt | None = Field(default=None, ge=1, le=MAX_EXPIRY_SECONDS)
    method: Literal["link", "email", "sms"] | None = None


class Payee(_Open):
    name: str = Field(min_length=1, max_length=140)
    iban: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{8,40}$")]
    swift_bic: str | None = None


class PayoutAttributes(_Open):
    amount: Amount
    currency: Currency
    communication: Communication | None = None
    beneficiary: Payee | None = None


class PayoutData(_Open):
    type: str | None = None
    attributes: PayoutAttributes


class PayoutBody(_Open):
    meta: PayoutMeta = Field(default_factory=PayoutMeta)
    data: PayoutData


class RefundMeta(_Open):
    session_id: SessionId
    user_id: str | None = None


class RefundAttributes(_Open):
    amount: Amount | None = Field(default=None, description="Omitted = the full amount")
    communication: Communication | None = None


class RefundData(_Open):
    attributes: RefundAttributes = Field(default_factory=RefundAttributes)


class RefundBody(_Open):
    meta: RefundMeta
    data: RefundData = Field(default_factory=RefundData)


class PatchMeta(_Open):
    status: Literal["payment_cancelled"]


class PatchBody(_Open):
    meta: PatchMeta
