"""Request bodies of the Powens Pay API, as validated by the simulator (contract §2).

Unknown fields are accepted (the reference lists more than the simulator uses); the fields it uses
are checked. `amount` must be a JSON number: the reference's one example with a string is marked
uncertain, so a string is refused (`invalidValue`), which a service sending numbers never meets.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


def valid_iban(value: str) -> bool:
    """Shape and ISO 7064 mod-97 check digits."""
    iban = value.replace(" ", "").upper()
    if not _IBAN.fullmatch(iban):
        return False
    digits = "".join(str(int(char, 36)) for char in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PaymentAccount(_Open):
    scheme_name: Literal["iban", "sort_code_account_number"]
    identification: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1, max_length=140)
    issuer: str | None = Field(default=None, description="BIC")

    @model_validator(mode="after")
    def _iban(self) -> PaymentAccount:
        if self.scheme_name == "iban":
            if not valid_iban(self.identification):
                raise ValueError(f"identification {self.identification!r} is not a valid IBAN")
            self.identification = self.identification.replace(" ", "").upper()
        return self


class Identity(_Open):
    kind: Literal["individual", "corporate", "non_profit", "government"] = "individual"
    first_name: str | None = None
    last_name: str | None = None
    org_name: str | None = None
    scheme_name: str | None = None
    identification: str | None = None

    @model_validator(mode="after")
    def _required(self) -> Identity:
        if self.kind == "individual":
            if not (self.first_name and self.last_name):
                raise ValueError("an individual identity needs first_name and last_name")
        elif not (self.scheme_name and self.identification):
            raise ValueError(f"a {self.kind} identity needs scheme_name and identification")
        return self


class InstructionIn(_Open):
    label: str = Field(min_length=1, max_length=140)
    amount: Decimal = Field(description="A JSON number, e.g. 50.90")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. EUR")
    execution_date_type: Literal["first_open_day", "instant", "deferred", "periodic"]
    execution_date: date | None = None
    beneficiary: PaymentAccount
    beneficiary_identity: Identity | None = None
    reference_id: str | None = Field(default=None, max_length=31)

    @field_validator("amount", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a JSON number, e.g. 50.90")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if amount <= 0:
            raise ValueError("must be greater than 0")
        return amount


class PaymentInitRequest(_Open):
    client_redirect_uri: str = Field(min_length=1)
    client_state: str | None = Field(default=None, max_length=2000)
    instructions: list[InstructionIn] = Field(min_length=1)
    connector_uuid: str | None = None
    id_connector: int | None = None
    payer: PaymentAccount | None = None
    payer_identity: Identity | None = None
    operator_identity: Identity | None = None

    @field_validator("connector_uuid")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value is not None:
            uuid.UUID(value)  # ValueError names the problem
        return value


class PaymentUpdate(_Open):
    """`POST /payments/{id}`: only `{"cancel": true, ...}` is simulated."""

    cancel: bool | None = None
    client_redirect_uri: str | None = None
    client_state: str | None = Field(default=None, max_length=2000)


UNSIMULATED_UPDATES = ("validate_mechanism", "validated", "confirm", "resume", "fields", "psu_validate")


class ScopedTokenRequest(_Open):
    scope: str | list[str] = Field(description='e.g. ["payments:validate"]')

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(split_scopes(self.scope))


def split_scopes(scope: str | list[str]) -> list[str]:
    """A scope list as an array, or as one string separated by spaces or commas."""
    items = scope if isinstance(scope, list) else re.split(r"[\s,]+", scope)
    return [item.strip() for item in items if item.strip()]
