"""A Fintecture merchant application, as registered in Fintecture's Console."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from simulator.urls import http_url, same_endpoint

# One namespace for ids derived from an app_id, so a restart keeps them stable.
_ID_NAMESPACE = uuid.UUID("6f1c1a52-96b4-4a4e-9a53-5b0bd7d1c8f2")


class Beneficiary(BaseModel):
    """The merchant's account the payer's transfer goes to (shown in GET /pis/v2/payments)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "Demo Shop SAS"
    iban: str = "FR7630006000011234567890189"
    swift_bic: str = "AGRIFRPPXXX"


class AppConfig(BaseModel):
    """One merchant application, as registered in Fintecture's Console."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    public_key_pem: str | None = Field(
        default=None, description="The merchant's RSA public key (PEM); or give public_key_file"
    )
    public_key_file: Path | None = Field(default=None, description="Relative to the config file")
    redirect_uris: list[str] = Field(default_factory=list)
    webhook_url: str | None = None
    mode: Literal["strict", "lenient"] = Field(
        default="lenient",
        description="strict = production (signed requests required); lenient = sandbox",
    )
    name: str = "Demo Shop"
    acquiring_account: bool = Field(
        default=False,
        description="A Fintecture payment account: refunds are immediate but need transfer_state received",
    )
    beneficiary: Beneficiary = Field(default_factory=Beneficiary)

    _public_key: RSAPublicKey = PrivateAttr()

    @field_validator("redirect_uris")
    @classmethod
    def _redirects(cls, value: list[str]) -> list[str]:
        return [http_url(uri) for uri in value]

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return http_url(value) if value else None

    @model_validator(mode="after")
    def _load_key(self) -> AppConfig:
        if self.public_key_pem is None and self.public_key_file is not None:
            self.public_key_pem = self.public_key_file.read_text()
        if not self.public_key_pem:
            raise ValueError(f"application {self.app_id}: public_key_pem or public_key_file is required")
        key = load_pem_public_key(self.public_key_pem.encode())
        if not isinstance(key, RSAPublicKey):
            raise ValueError(f"application {self.app_id}: the public key must be an RSA key")
        self._public_key = key
        return self

    @property
    def public_key(self) -> RSAPublicKey:
        return self._public_key

    @property
    def bank_account_id(self) -> str:
        return str(uuid.uuid5(_ID_NAMESPACE, f"account:{self.app_id}"))

    def allows_redirect(self, uri: str) -> bool:
        """Registered URIs match on scheme, host, port and path; the query may differ."""
        return any(same_endpoint(registered, uri) for registered in self.redirect_uris)
