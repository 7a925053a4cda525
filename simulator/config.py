"""What the simulator is told at start: the merchant applications of each provider and the timings.

The JSON file given to `checkout simulator --config` has exactly the JSON fields below; the clock
and the webhook HTTP client/transport can only be passed in code (tests, the demo). Each provider
defines its own application type (`simulator/<provider>/config.py`); they are registered here.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.clock import Clock, SystemClock
from simulator.fintecture.config import AppConfig, Beneficiary
from simulator.powens.config import PowensAppConfig, PowensBeneficiary, PowensPhaseSeconds
from simulator.urls import http_url

__all__ = [
    "AppConfig",
    "Beneficiary",
    "PowensAppConfig",
    "PowensBeneficiary",
    "PowensPhaseSeconds",
    "SimulatorConfig",
    "load_config",
]


class SimulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    applications: list[AppConfig] = Field(
        default_factory=list, description="Fintecture merchant applications"
    )
    powens_applications: list[PowensAppConfig] = Field(default_factory=list, description="Powens Pay clients")
    public_url: str = Field(
        default="http://127.0.0.1:8100", description="Base URL the simulator is reached at"
    )
    token_ttl_seconds: int = Field(default=3600, ge=1)
    default_expiry_seconds: int = Field(default=86400, ge=1, description="When connect sends no expiry")
    pending_settle_seconds: float = Field(
        default=30.0, ge=0, description="A payment left pending settles after this long (clock time)"
    )
    payout_transfer_seconds: float = Field(
        default=0.0,
        ge=0,
        description="A payout's transfer is executed this long (clock time) after its payment is created; "
        "0 = at once, as in the Verified Payout guide's example",
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
    powens_token_ttl_seconds: int = Field(default=1800, ge=1, description="Powens service tokens: 30 min")
    powens_scoped_token_ttl_seconds: int = Field(
        default=604_800, ge=1, description="Powens payment-scoped tokens: 7 days"
    )
    powens_phase_seconds: PowensPhaseSeconds = Field(
        default_factory=PowensPhaseSeconds,
        description="Each phase of the test connector's label scenario (15 min; 15 s for instant)",
    )

    # Code-only settings (not in the JSON file).
    clock: Clock = Field(default_factory=SystemClock, exclude=True)
    webhook_transport: httpx.AsyncBaseTransport | None = Field(default=None, exclude=True)
    webhook_client: httpx.AsyncClient | None = Field(default=None, exclude=True)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return http_url(value).rstrip("/")

    @model_validator(mode="after")
    def _unique_apps(self) -> SimulatorConfig:
        ids = [app.app_id for app in self.applications]
        if len(ids) != len(set(ids)):
            raise ValueError("application app_id values must be unique")
        client_ids = [app.client_id for app in self.powens_applications]
        if len(client_ids) != len(set(client_ids)):
            raise ValueError("Powens client_id values must be unique")
        return self

    def app(self, app_id: str) -> AppConfig | None:
        """The Fintecture application with this app_id."""
        return next((app for app in self.applications if app.app_id == app_id), None)

    def powens_app(self, client_id: str) -> PowensAppConfig | None:
        """The Powens client with this client_id."""
        return next((app for app in self.powens_applications if app.client_id == client_id), None)


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
