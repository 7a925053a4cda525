"""Fintecture's own settings (`FINTECTURE_*`), read from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from app.config import http_url, is_placeholder, public_url_problems
from app.providers.base import ProviderSettings

SANDBOX_API_URL = "https://api-sandbox.fintecture.com"
PRODUCTION_API_URL = "https://api.fintecture.com"


class FintectureSettings(ProviderSettings):
    """The application's credentials and API host. Enabled once `FINTECTURE_APP_ID` is set."""

    model_config = SettingsConfigDict(env_prefix="FINTECTURE_", populate_by_name=True)

    enabled_by: ClassVar[str] = "FINTECTURE_APP_ID"

    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    # PEM private key: signs every request, decrypts webhook signatures. Inline, or read from a file.
    private_key: SecretStr = SecretStr("")
    private_key_file: Path | None = None
    # Overrides the API host (e.g. the simulator in the sandbox); empty = Fintecture's own host.
    api_url: str = ""
    # Accepted clock difference for a webhook's Date header, both ways. Read from
    # WEBHOOK_TOLERANCE_SECONDS (the name it always had) or FINTECTURE_WEBHOOK_TOLERANCE_SECONDS.
    webhook_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        validation_alias=AliasChoices("FINTECTURE_WEBHOOK_TOLERANCE_SECONDS", "WEBHOOK_TOLERANCE_SECONDS"),
    )

    @field_validator("app_id")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @model_validator(mode="after")
    def _load_private_key_file(self) -> FintectureSettings:
        if self.private_key_file and not self.private_key.get_secret_value():
            try:
                pem = self.private_key_file.read_text()
            except OSError as exc:
                raise ValueError(f"FINTECTURE_PRIVATE_KEY_FILE cannot be read: {exc}") from exc
            self.private_key = SecretStr(pem)
        return self

    def base_url(self, production: bool) -> str:
        """The API host requests go to: the override, else Fintecture's production or sandbox host."""
        if self.api_url:
            return self.api_url.rstrip("/")
        return PRODUCTION_API_URL if production else SANDBOX_API_URL

    def is_configured(self) -> bool:
        return bool(self.app_id)

    def problems(self) -> list[str]:
        if self.app_id and not self.app_secret.get_secret_value():
            return ["FINTECTURE_APP_SECRET is required when FINTECTURE_APP_ID is set"]
        return []

    def production_problems(self) -> list[str]:
        problems: list[str] = []
        secrets = {
            "FINTECTURE_APP_SECRET": self.app_secret,
            "FINTECTURE_PRIVATE_KEY (or FINTECTURE_PRIVATE_KEY_FILE)": self.private_key,
        }
        for name, secret in secrets.items():
            if is_placeholder(secret.get_secret_value()):
                problems.append(f"{name} is missing or a placeholder")
        if is_placeholder(self.app_id):
            problems.append("FINTECTURE_APP_ID is missing or a placeholder")
        pem = self.private_key.get_secret_value()
        if pem and "PRIVATE KEY" not in pem:
            problems.append("FINTECTURE_PRIVATE_KEY is not a PEM private key")
        base_url = self.base_url(production=True)
        problems += public_url_problems("FINTECTURE_API_URL", base_url)
        if "/_sim" in base_url or "simulator" in base_url:
            problems.append("FINTECTURE_API_URL points at the provider simulator")
        if urlsplit(base_url).hostname == urlsplit(SANDBOX_API_URL).hostname:
            problems.append(
                "FINTECTURE_API_URL is Fintecture's sandbox, where no money moves; production uses "
                f"{PRODUCTION_API_URL}"
            )
        return problems
