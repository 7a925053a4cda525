"""One typed settings object for the whole service, read from the environment (and `.env`)."""

from __future__ import annotations

import ipaddress
import socket
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

FINTECTURE_SANDBOX_API_URL = "https://api-sandbox.fintecture.com"
FINTECTURE_PRODUCTION_API_URL = "https://api.fintecture.com"

# Values that mean "nobody filled this in"; refused in production.
_PLACEHOLDERS = {"", "changeme", "change-me", "placeholder", "secret", "dev", "demo", "test", "xxx"}


class ConfigurationError(RuntimeError):
    """The settings cannot run the service; the message lists every problem."""


def _is_placeholder(value: str) -> bool:
    value = value.strip().lower()
    # "change-me-to-a-long-random-string" is as much a placeholder as "changeme".
    return value in _PLACEHOLDERS or any(word in value for word in ("changeme", "change-me", "change_me"))


def _is_local_host(host: str | None) -> bool:
    if not host:
        return True
    host = host.rstrip(".")  # "localhost." resolves like "localhost"
    if host in {"localhost", "simulator"} or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            # Shorthand IPv4 spellings resolvers accept, such as 127.1.
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1
    return ip.is_loopback or ip.is_unspecified


def normalise_database_url(url: str) -> str:
    """Accept the usual `postgresql://` spellings and drive them through asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a PostgreSQL URL (postgresql://user@host:port/db)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    provider_env: Literal["sandbox", "production"] = "sandbox"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/checkout"
    public_url: str = "http://127.0.0.1:8000"
    storefront_url: str = "http://127.0.0.1:8000/"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    admin_api_key: SecretStr = SecretStr("")

    fintecture_app_id: str = ""
    fintecture_app_secret: SecretStr = SecretStr("")
    fintecture_private_key: SecretStr = SecretStr("")
    fintecture_private_key_file: Path | None = None
    fintecture_api_url: str = ""

    # Payment behaviour
    payment_session_expiry_seconds: int = Field(default=1800, ge=60, le=7 * 24 * 3600)
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    provider_timeout_seconds: float = Field(default=10.0, gt=0)
    provider_max_retries: int = Field(default=3, ge=0, le=10)
    # How long a payer returning through /callback waits for the provider before seeing "processing".
    callback_provider_timeout_seconds: float = Field(default=8.0, gt=0)
    # Background workers
    workers_enabled: bool = True
    inbox_poll_seconds: float = Field(default=1.0, gt=0)
    sweeper_interval_seconds: float = Field(default=30.0, gt=0)
    sweeper_stale_after_seconds: int = Field(default=60, ge=0)
    inbox_max_attempts: int = Field(default=20, ge=1)

    log_level: str = "INFO"
    # Serve the demo storefront page at / (the `demo` command turns it on).
    demo_storefront: bool = False

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("public_url", "storefront_url", "fintecture_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _load_private_key_file(self) -> Settings:
        if self.fintecture_private_key_file and not self.fintecture_private_key.get_secret_value():
            try:
                pem = self.fintecture_private_key_file.read_text()
            except OSError as exc:
                raise ValueError(f"FINTECTURE_PRIVATE_KEY_FILE cannot be read: {exc}") from exc
            self.fintecture_private_key = SecretStr(pem)
        return self

    @property
    def is_production(self) -> bool:
        return self.provider_env == "production"

    @cached_property
    def fintecture_base_url(self) -> str:
        if self.fintecture_api_url:
            return self.fintecture_api_url.rstrip("/")
        return FINTECTURE_PRODUCTION_API_URL if self.is_production else FINTECTURE_SANDBOX_API_URL

    @property
    def callback_url(self) -> str:
        return self.public_url.rstrip("/") + "/callback"

    def production_problems(self) -> list[str]:
        """Everything that makes these settings unsafe for real money; empty when fine."""
        problems: list[str] = []
        secrets = {
            "ADMIN_API_KEY": self.admin_api_key,
            "FINTECTURE_APP_SECRET": self.fintecture_app_secret,
            "FINTECTURE_PRIVATE_KEY (or FINTECTURE_PRIVATE_KEY_FILE)": self.fintecture_private_key,
        }
        for name, secret in secrets.items():
            if _is_placeholder(secret.get_secret_value()):
                problems.append(f"{name} is missing or a placeholder")
        if len(self.admin_api_key.get_secret_value()) < 24:
            problems.append("ADMIN_API_KEY must be at least 24 characters")
        if _is_placeholder(self.fintecture_app_id):
            problems.append("FINTECTURE_APP_ID is missing or a placeholder")
        pem = self.fintecture_private_key.get_secret_value()
        if pem and "PRIVATE KEY" not in pem:
            problems.append("FINTECTURE_PRIVATE_KEY is not a PEM private key")
        for name, url in {
            "PUBLIC_URL": self.public_url,
            "STOREFRONT_URL": self.storefront_url,
            "FINTECTURE_API_URL": self.fintecture_base_url,
        }.items():
            parts = urlsplit(url)
            if parts.scheme != "https":
                problems.append(f"{name} must be an https URL (got {url!r})")
            if _is_local_host(parts.hostname):
                problems.append(f"{name} points at a local host ({url!r}); the simulator is for sandbox only")
        if "/_sim" in self.fintecture_base_url or "simulator" in self.fintecture_base_url:
            problems.append("FINTECTURE_API_URL points at the provider simulator")
        if urlsplit(self.fintecture_base_url).hostname == urlsplit(FINTECTURE_SANDBOX_API_URL).hostname:
            problems.append(
                "FINTECTURE_API_URL is Fintecture's sandbox, where no money moves; production uses "
                f"{FINTECTURE_PRODUCTION_API_URL}"
            )
        return problems

    def check(self) -> None:
        """Refuse to run with settings that would be unsafe; call once at start-up."""
        if self.is_production:
            problems = self.production_problems()
            if problems:
                raise ConfigurationError(
                    "Refusing to start in production:\n" + "\n".join(f"  - {p}" for p in problems)
                )


def get_settings() -> Settings:
    return Settings()
