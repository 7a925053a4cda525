"""The service's core settings, read from the environment (and `.env`).

Each payment provider owns its own settings class with its own prefix
(`app/providers/<name>/settings.py`); `app/providers/registry.py` checks both together at start-up.
The checks shared by the core and the providers (placeholders, local hosts, https) live here.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import socket
from typing import Annotated, Literal
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that mean "nobody filled this in"; refused in production.
_PLACEHOLDERS = {"", "changeme", "change-me", "placeholder", "secret", "dev", "demo", "test", "xxx"}


class ConfigurationError(RuntimeError):
    """The settings cannot run the service; the message lists every problem."""


def is_placeholder(value: str) -> bool:
    """Whether a secret or identifier is empty or an obvious stand-in."""
    value = value.strip().lower()
    # "change-me-to-a-long-random-string" is as much a placeholder as "changeme".
    return value in _PLACEHOLDERS or any(word in value for word in ("changeme", "change-me", "change_me"))


def is_local_host(host: str | None) -> bool:
    """Whether a URL's host is this machine (or the simulator's container name): never for real money."""
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


def http_url(value: str) -> str:
    """Validator body for URL settings: empty, or an http(s) URL (stripped)."""
    value = value.strip()
    if value and urlsplit(value).scheme not in {"http", "https"}:
        raise ValueError("must be an http(s) URL")
    return value


def public_url_problems(name: str, url: str) -> list[str]:
    """Production problems of a URL setting named `name`: not https, or a local host."""
    problems: list[str] = []
    parts = urlsplit(url)
    if parts.scheme != "https":
        problems.append(f"{name} must be an https URL (got {url!r})")
    if is_local_host(parts.hostname):
        problems.append(f"{name} points at a local host ({url!r}); the simulator is for sandbox only")
    return problems


def normalise_database_url(url: str) -> str:
    """Accept the usual `postgresql://` spellings and drive them through asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a PostgreSQL URL (postgresql://user@host:port/db)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    provider_env: Literal["sandbox", "production"] = "sandbox"
    # The provider new payment sessions use when the storefront names none; empty = the first
    # enabled provider in the registry's list.
    default_provider: str = ""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/checkout"
    database_pool_size: int = Field(default=20, ge=1, le=100)
    # Open the whole pool when the process starts, rather than one connection at a time under the
    # first requests (app/db.py, `fill_pool`).
    database_pool_prefill: bool = True
    # How long a request waits for a free database connection, and for a new connection to open,
    # before it gets a 503: together they stay under the 5 s a client may wait in an outage.
    database_pool_timeout_seconds: float = Field(default=3.0, gt=0)
    database_connect_timeout_seconds: float = Field(default=1.5, gt=0)
    public_url: str = "http://127.0.0.1:8000"
    storefront_url: str = "http://127.0.0.1:8000/"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    admin_api_key: SecretStr = SecretStr("")

    # Payment behaviour
    payment_session_expiry_seconds: int = Field(default=1800, ge=60, le=7 * 24 * 3600)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Units of one SKU an order may hold (the demo shop's quantity field reads it too); the request
    # schema's own ceiling (app/orders/schemas.py MAX_QUANTITY) bounds it.
    max_line_quantity: int = Field(default=10, ge=1, le=1000)
    provider_timeout_seconds: float = Field(default=10.0, gt=0)
    provider_max_retries: int = Field(default=3, ge=0, le=10)
    # How long a payer returning through /callback waits for the provider before seeing "processing".
    callback_provider_timeout_seconds: float = Field(default=8.0, gt=0)
    # Background workers
    workers_enabled: bool = True
    inbox_poll_seconds: float = Field(default=1.0, gt=0)
    inbox_max_attempts: int = Field(default=20, ge=1)
    # Webhook events one process works on at once, and how long a claimed event stays claimed.
    inbox_concurrency: int = Field(default=16, ge=1, le=256)
    inbox_lease_seconds: int = Field(default=60, ge=5)
    sweeper_interval_seconds: float = Field(default=30.0, gt=0)
    sweeper_stale_after_seconds: int = Field(default=60, ge=0)
    # Outbound events: a JSON object of each merchant endpoint's URL and its Standard Webhooks
    # secret, {"https://erp.example.com/hooks": "whsec_<base64 of 24 to 64 random bytes>"}.
    merchant_webhook_urls: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    merchant_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # A failed delivery waits base * 2^(attempts-1) seconds, at most the max; parked after max_attempts.
    merchant_webhook_max_attempts: int = Field(default=20, ge=1, le=100)
    merchant_webhook_retry_base_seconds: float = Field(default=10.0, gt=0)
    merchant_webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    merchant_webhook_poll_seconds: float = Field(default=1.0, gt=0)
    merchant_webhook_concurrency: int = Field(default=8, ge=1, le=64)
    merchant_webhook_lease_seconds: int = Field(default=60, ge=5)
    # Per-client limits on the anonymous endpoints, in the `limits` notation ("20/minute;200/hour").
    # Counters are per process in memory://; redis://host:6379/0 shares them between processes.
    rate_limit_enabled: bool = True
    rate_limit_storage_url: str = "memory://"
    rate_limit_order_create: str = "30/minute;300/hour"  # POST /orders
    rate_limit_order_access: str = "300/minute"  # an order's token: reading it, its payment session
    rate_limit_callback: str = "60/minute"  # the payer's return

    # Bearer token GET /metrics asks for; empty = no /metrics at all (404).
    metrics_token: SecretStr = SecretStr("")

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

    @field_validator("public_url", "storefront_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("merchant_webhook_urls", mode="before")
    @classmethod
    def _merchant_webhooks(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                raise ValueError('must be a JSON object: {"https://...": "whsec_..."}') from None
        if not isinstance(value, dict):
            raise ValueError('must be a JSON object: {"https://...": "whsec_..."}')
        for url, secret in value.items():
            if not isinstance(url, str) or urlsplit(url.strip()).scheme not in {"http", "https"}:
                raise ValueError(f"{url!r} is not an http(s) URL")
            raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
            try:
                if not isinstance(raw, str) or not raw.startswith("whsec_"):
                    raise ValueError
                key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
            except (ValueError, binascii.Error):
                raise ValueError(f"the secret of {url} must be whsec_ followed by base64") from None
            if not 24 <= len(key) <= 64:
                raise ValueError(f"the secret of {url} must be 24 to 64 bytes once decoded")
        return {url.strip(): secret for url, secret in value.items()}

    @field_validator("rate_limit_order_create", "rate_limit_order_access", "rate_limit_callback")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError('must be limits such as "20/minute" or "20/minute;200/hour"') from None
        return value

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _rate_limit_storage(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"memory", "redis", "rediss", "async+memory", "async+redis"}:
            raise ValueError("must be memory:// or a redis:// URL")
        return value

    @field_validator("default_provider")
    @classmethod
    def _provider_name(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def is_production(self) -> bool:
        return self.provider_env == "production"

    @property
    def callback_url(self) -> str:
        return self.public_url.rstrip("/") + "/callback"

    def production_problems(self) -> list[str]:
        """What in the core settings is unsafe for real money; empty when fine.

        Each provider's settings report their own (`ProviderSettings.production_problems`);
        `app.providers.registry.check` lists both and refuses to start.
        """
        problems: list[str] = []
        if is_placeholder(self.admin_api_key.get_secret_value()):
            problems.append("ADMIN_API_KEY is missing or a placeholder")
        if len(self.admin_api_key.get_secret_value()) < 24:
            problems.append("ADMIN_API_KEY must be at least 24 characters")
        metrics_token = self.metrics_token.get_secret_value()
        if metrics_token and (is_placeholder(metrics_token) or len(metrics_token) < 24):
            problems.append("METRICS_TOKEN must be at least 24 characters and not a placeholder")
        problems += public_url_problems("PUBLIC_URL", self.public_url)
        problems += public_url_problems("STOREFRONT_URL", self.storefront_url)
        for url in self.merchant_webhook_urls:
            if urlsplit(url).scheme != "https":
                problems.append(f"MERCHANT_WEBHOOK_URLS: {url!r} must be an https URL")
        return problems
