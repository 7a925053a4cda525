"""What the simulator is told at start: the merchant applications it knows and its timings.

The JSON file given to `checkout simulator --config` has exactly the JSON fields below; the clock
and the webhook HTTP client/transport can only be passed in code (tests, the demo).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from simulator.clock import Clock, SystemClock

# One namespace for ids derived from an app_id, so a restart keeps them stable.
_ID_NAMESPACE = uuid.UUID("6f1c1a52-96b4-4a4e-9a53-5b0bd7d1c8f2")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    return value


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
        return [_http_url(uri) for uri in value]

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return _http_url(value) if value else None

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
        wanted = urlsplit(uri)
        for registered in self.redirect_uris:
            parts = urlsplit(registered)
            if (parts.scheme, parts.netloc.lower(), parts.path or "/") == (
                wanted.scheme,
                wanted.netloc.lower(),
                wanted.path or "/",
            ):
                return True
        return False


class SimulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    applications: list[AppConfig] = Field(default_factory=list)
    public_url: str = Field(
        default="http://127.0.0.1:8100", description="Base URL the simulator is reached at"
    )
    token_ttl_seconds: int = Field(default=3600, ge=1)
    default_expiry_seconds: int = Field(default=86400, ge=1, description="When connect sends no expiry")
    pending_settle_seconds: float = Field(
        default=30.0, ge=0, description="A payment left pending settles after this long (clock time)"
    )
    webhook_retry_base_delay: float = Field(
        default=5.0, ge=0, description="Retry n waits base * 2**(n-1) seconds of clock time"
    )
    webhook_max_retries: int = Field(default=10, ge=0)
    webhook_timeout_seconds: float = Field(default=20.0, gt=0)
    request_date_tolerance_seconds: float | None = Field(
        default=None,
        description="Reject signed requests whose Date is further than this from the clock; None = no check",
    )
    max_recorded: int = Field(default=10_000, ge=1, description="Requests and deliveries kept for /_sim")

    # Code-only settings (not in the JSON file).
    clock: Clock = Field(default_factory=SystemClock, exclude=True)
    webhook_transport: httpx.AsyncBaseTransport | None = Field(default=None, exclude=True)
    webhook_client: httpx.AsyncClient | None = Field(default=None, exclude=True)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return _http_url(value).rstrip("/")

    @model_validator(mode="after")
    def _unique_apps(self) -> SimulatorConfig:
        ids = [app.app_id for app in self.applications]
        if len(ids) != len(set(ids)):
            raise ValueError("application app_id values must be unique")
        return self

    def app(self, app_id: str) -> AppConfig | None:
        return next((app for app in self.applications if app.app_id == app_id), None)


def load_config(path: Path, **overrides: object) -> SimulatorConfig:
    """Read a JSON config file; relative `public_key_file` paths are relative to the file."""
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a JSON object")
    for app in raw.get("applications", []):
        if isinstance(app, dict) and app.get("public_key_file"):
            key_path = Path(app["public_key_file"])
            app["public_key_file"] = str(key_path if key_path.is_absolute() else path.parent / key_path)
    raw.update(overrides)
    return SimulatorConfig.model_validate(raw)
