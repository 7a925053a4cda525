"""A Powens merchant application (a client of a Powens domain) and Powens's timings."""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.urls import http_url, same_endpoint

_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*")
DOMAIN_SUFFIX = ".biapi.pro"


def _without_query(value: str, what: str) -> str:
    parts = urlsplit(http_url(value))
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must have no query string or fragment, got {value!r}")
    return value


class PowensBeneficiary(BaseModel):
    """The merchant's account, printed for the service (POWENS_BENEFICIARY_*). The simulator does
    not enforce it: a payment may name any beneficiary, as with the real API."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="Demo Shop SAS", min_length=1)
    iban: str = Field(default="FR7630006000011234567890189", min_length=15)


class PowensAppConfig(BaseModel):
    """One client of a Powens domain with Pay enabled, as set up in the Powens console."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    domain: str = Field(
        default="demo-sandbox",
        description="The domain name (`shop-sandbox`, or `shop-sandbox.biapi.pro`): the webview's `domain`",
    )
    name: str = Field(default="Demo Shop", description="Shown in the webview")
    redirect_uris: list[str] = Field(
        default_factory=list,
        description="Registered URLs: payments' client_redirect_uri and the webview's redirect_uri",
    )
    webhook_url: str | None = Field(
        default=None, description="PAYMENT_STATE_UPDATED deliveries go here; none are sent without it"
    )
    webhook_secret: str | None = Field(
        default=None, description="The hmac_signature auth provider's secret_key (required with webhook_url)"
    )
    webhook_gzip: bool = Field(
        default=False, description="webhooks.compression.enabled: gzip bodies, Content-Encoding: gzip"
    )
    max_amount: Decimal | None = Field(
        default=None,
        gt=0,
        description="payment.max_amount: larger payments are refused (sandbox: 10.00); null = no cap",
    )
    require_identities: bool = Field(
        default=False,
        description="Refuse payments without payer_identity and beneficiary_identity",
    )
    beneficiary: PowensBeneficiary = Field(default_factory=PowensBeneficiary)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower().removesuffix(DOMAIN_SUFFIX)
        if not _DOMAIN.fullmatch(value):
            raise ValueError(f"domain must look like `shop-sandbox` (or `shop-sandbox{DOMAIN_SUFFIX}`)")
        return value

    @field_validator("redirect_uris")
    @classmethod
    def _redirects(cls, value: list[str]) -> list[str]:
        return [_without_query(uri, "a redirect URI") for uri in value]

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        # The signed "endpoint" is the URL's path; whether a query would be signed is not documented.
        return _without_query(value, "webhook_url") if value else None

    @model_validator(mode="after")
    def _secret_with_url(self) -> PowensAppConfig:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError(f"Powens client {self.client_id}: webhook_secret is required with webhook_url")
        return self

    def allows_redirect(self, uri: str) -> bool:
        """Registered URIs match on scheme, host, port and path."""
        return any(same_endpoint(registered, uri) for registered in self.redirect_uris)

    def matches_domain(self, value: str) -> bool:
        return value.strip().lower().removesuffix(DOMAIN_SUFFIX) == self.domain


class PowensPhaseSeconds(BaseModel):
    """How long each phase of the test connector's label scenario lasts, in clock seconds."""

    model_config = ConfigDict(extra="forbid")

    first_open_day: float = Field(default=900.0, ge=0, description="Also deferred and periodic payments")
    instant: float = Field(default=15.0, ge=0)

    def for_type(self, execution_date_type: str) -> float:
        return self.instant if execution_date_type == "instant" else self.first_open_day
