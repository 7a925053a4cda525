"""Powens Pay's own settings (`POWENS_*`), read from the environment and `.env`.

Readings of the contract (contracts/powens.md) that are uncertain there and chosen here on the
safe side:

- `POWENS_DOMAIN` is required whenever Powens is enabled: it names the API host *and* is a
  parameter of every webview URL, so even with `POWENS_API_URL` pointing elsewhere it is needed.
  A value given as `shop-sandbox.biapi.pro` is reduced to `shop-sandbox`.
- Production refuses a domain ending in `-sandbox`: sandbox domains look like `xxx-sandbox`
  (seen in public code only [?]) and move no money; it is refused like any provider's sandbox host.
- No replay window is documented for webhooks [?]: `POWENS_WEBHOOK_TOLERANCE_SECONDS` defaults to
  600 (±10 minutes, both ways), the contract's own suggestion.
- The webhook HMAC secret read from `POWENS_WEBHOOK_SECRET_FILE` has surrounding whitespace (the
  file's final newline) stripped; the inline `POWENS_WEBHOOK_SECRET` wins when both are set.
- The webview language is the merchant's `POWENS_LANGUAGE` (default `fr`) for every payer: the
  webview's supported languages are not documented, so the payer's own language is never put in
  the webview path, where an unsupported one could break the page.
- The beneficiary IBAN is validated with `schwifty` (country format and check digits) and sent in
  its compact form.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from app.config import http_url, is_placeholder, public_url_problems
from app.providers.base import ProviderSettings

DEFAULT_WEBVIEW_URL = "https://webview.powens.com"
API_HOST_SUFFIX = ".biapi.pro"
API_VERSION_PATH = "/2.0"

_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_LANGUAGE = re.compile(r"^[a-z]{2}$")


def iban_problem(value: str) -> str | None:
    """Why `value` is not a valid IBAN, or None when it is one."""
    try:
        IBAN(value)
    except (SchwiftyException, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


class PowensSettings(ProviderSettings):
    """The domain client's credentials, the merchant's beneficiary account and the webhook secret.

    Enabled once `POWENS_CLIENT_ID` is set.
    """

    model_config = SettingsConfigDict(env_prefix="POWENS_", populate_by_name=True)

    enabled_by: ClassVar[str] = "POWENS_CLIENT_ID"

    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    # The Powens domain (e.g. `shop-sandbox`): the API lives at https://{domain}.biapi.pro/2.0.
    domain: str = ""
    # Overrides the API base URL (e.g. the simulator in the sandbox); empty = the domain's own.
    api_url: str = ""
    # Overrides the webview host; empty = https://webview.powens.com.
    webview_url: str = ""
    # HMAC secret of the webhook auth provider (shown once by Powens). Inline, or read from a file.
    webhook_secret: SecretStr = SecretStr("")
    webhook_secret_file: Path | None = None
    # The merchant's account every payment is made to.
    beneficiary_iban: str = ""
    beneficiary_name: str = ""
    # Accepted clock difference for a webhook's BI-Signature-Date, both ways.
    webhook_tolerance_seconds: int = Field(default=600, ge=1, le=3600)
    # The webview's interface language (two lowercase letters).
    language: str = "fr"

    @field_validator("client_id", "beneficiary_name")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("beneficiary_iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        return "".join(value.split()).upper()

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if value.endswith(API_HOST_SUFFIX):
            value = value[: -len(API_HOST_SUFFIX)]
        if value and not _DOMAIN.match(value):
            raise ValueError("must be a Powens domain name such as 'shop-sandbox'")
        return value

    @field_validator("api_url", "webview_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value).rstrip("/")

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        value = value.strip().lower()
        if not _LANGUAGE.match(value):
            raise ValueError("must be a two-letter language code such as 'fr'")
        return value

    @model_validator(mode="after")
    def _load_webhook_secret_file(self) -> PowensSettings:
        if self.webhook_secret_file and not self.webhook_secret.get_secret_value():
            try:
                secret = self.webhook_secret_file.read_text()
            except OSError as exc:
                raise ValueError(f"POWENS_WEBHOOK_SECRET_FILE cannot be read: {exc}") from exc
            self.webhook_secret = SecretStr(secret.strip())
        return self

    # --- Derived values ---------------------------------------------------------------------------

    def base_url(self) -> str:
        """The API base URL: the override, else https://{domain}.biapi.pro/2.0."""
        if self.api_url:
            return self.api_url
        return f"https://{self.domain}{API_HOST_SUFFIX}{API_VERSION_PATH}"

    def webview_base_url(self) -> str:
        return self.webview_url or DEFAULT_WEBVIEW_URL

    def compact_iban(self) -> str:
        """The beneficiary IBAN in compact form; ValueError when it is not a valid IBAN."""
        try:
            return IBAN(self.beneficiary_iban).compact
        except (SchwiftyException, ValueError) as exc:
            raise ValueError(f"POWENS_BENEFICIARY_IBAN is not a valid IBAN: {exc}") from None

    # --- Checks -----------------------------------------------------------------------------------

    def is_configured(self) -> bool:
        return bool(self.client_id)

    def problems(self) -> list[str]:
        if not self.client_id:
            return []
        problems: list[str] = []
        if not self.client_secret.get_secret_value():
            problems.append("POWENS_CLIENT_SECRET is required when POWENS_CLIENT_ID is set")
        if not self.domain:
            problems.append("POWENS_DOMAIN is required when POWENS_CLIENT_ID is set")
        if not self.beneficiary_iban:
            problems.append("POWENS_BENEFICIARY_IBAN is required when POWENS_CLIENT_ID is set")
        elif (reason := iban_problem(self.beneficiary_iban)) is not None:
            problems.append(f"POWENS_BENEFICIARY_IBAN is not a valid IBAN: {reason}")
        if not self.beneficiary_name:
            problems.append("POWENS_BENEFICIARY_NAME is required when POWENS_CLIENT_ID is set")
        return problems

    def production_problems(self) -> list[str]:
        problems = [p for p in self.problems() if not p.startswith("POWENS_CLIENT_SECRET")]
        secrets = {
            "POWENS_CLIENT_SECRET": self.client_secret,
            "POWENS_WEBHOOK_SECRET (or POWENS_WEBHOOK_SECRET_FILE)": self.webhook_secret,
        }
        for name, secret in secrets.items():
            if is_placeholder(secret.get_secret_value()):
                problems.append(f"{name} is missing or a placeholder")
        if is_placeholder(self.client_id):
            problems.append("POWENS_CLIENT_ID is missing or a placeholder")
        if self.domain.endswith("-sandbox"):
            problems.append(f"POWENS_DOMAIN {self.domain!r} is a Powens sandbox domain, where no money moves")
        for name, url in (
            ("POWENS_API_URL", self.base_url()),
            ("POWENS_WEBVIEW_URL", self.webview_base_url()),
        ):
            problems += public_url_problems(name, url)
            if "/_sim" in url or "simulator" in url:
                problems.append(f"{name} points at the provider simulator")
        return problems
