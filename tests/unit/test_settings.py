"""Settings: sandbox defaults start; production refuses every unsafe setting with a clear message.

The core settings (`Settings`) and each provider's (`FintectureSettings`) are read apart and checked
together by `registry.check`, which `create_app` calls before anything starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from app.config import ConfigurationError, Settings
from app.main import create_app
from app.providers import registry
from app.providers.base import ProviderSettings
from app.providers.fintecture import FintectureProvider, FintectureSettings
from tests.support.settings_env import (  # noqa: F401 - isolated_environment is used through pytestmark
    env_names,
    every_env_name,
    isolated_environment,
    settings_classes,
)

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "fintecture_"


pytestmark = pytest.mark.usefixtures("isolated_environment")


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _fintecture(**values: Any) -> FintectureSettings:
    return FintectureSettings(_env_file=None, **values)  # type: ignore[call-arg]


def _configure(values: dict[str, Any]) -> tuple[Settings, dict[str, ProviderSettings]]:
    """`fintecture_*` values go to FintectureSettings (without the prefix), the rest to Settings."""
    core = {key: value for key, value in values.items() if not key.startswith(PREFIX)}
    provider = {key[len(PREFIX) :]: value for key, value in values.items() if key.startswith(PREFIX)}
    return _settings(**core), registry.load_provider_settings([_fintecture(**provider)])


def _check(values: dict[str, Any]) -> None:
    registry.check(*_configure(values))


def _create_app(values: dict[str, Any]) -> None:
    settings, providers = _configure(values)
    create_app(settings, list(providers.values()))


@pytest.fixture
def production(private_key_pem: str) -> dict[str, Any]:
    """A complete, safe production configuration; each test breaks one thing."""
    return {
        "provider_env": "production",
        "database_url": "postgresql://checkout:pw@db.internal:5432/checkout",
        "public_url": "https://pay.shop.example",
        "storefront_url": "https://shop.example/checkout/result",
        "admin_api_key": "k3Yq9v2LwXp8Rt5Zb7Nc4Md6",
        "fintecture_app_id": "4f7d1c2e-app",
        "fintecture_app_secret": "9b1e77a0-5c4d-4e8f-a1b2-c3d4e5f60718",
        "fintecture_private_key": private_key_pem,
    }


async def test_sandbox_defaults_start() -> None:
    settings, providers = _configure({})
    assert settings.provider_env == "sandbox"
    assert settings.production_problems()  # unsafe for real money...
    registry.check(settings, providers)  # ...but fine for the sandbox
    assert create_app(settings, list(providers.values())).title
    async with httpx.AsyncClient() as http:
        assert registry.build_providers(settings, providers, http) == {}


async def test_safe_production_settings_start(production: dict[str, Any]) -> None:
    settings, providers = _configure(production)
    assert settings.production_problems() == []
    assert providers["fintecture"].production_problems() == []
    registry.check(settings, providers)
    create_app(settings, list(providers.values()))
    async with httpx.AsyncClient() as http:
        built = registry.build_providers(settings, providers, http)
    assert isinstance(built["fintecture"], FintectureProvider)
    fintecture = providers["fintecture"]
    assert isinstance(fintecture, FintectureSettings)
    assert fintecture.base_url(production=True) == "https://api.fintecture.com"


def test_production_key_can_come_from_a_file(production: dict[str, Any], tmp_path: Path) -> None:
    key_file = tmp_path / "fintecture-private.pem"
    key_file.write_text(production.pop("fintecture_private_key"))
    settings, providers = _configure({**production, "fintecture_private_key_file": key_file})
    registry.check(settings, providers)
    fintecture = providers["fintecture"]
    assert isinstance(fintecture, FintectureSettings)
    assert "PRIVATE KEY" in fintecture.private_key.get_secret_value()


def test_unreadable_key_file_is_a_clear_error(production: dict[str, Any], tmp_path: Path) -> None:
    production.pop("fintecture_private_key")
    with pytest.raises(ValidationError, match="FINTECTURE_PRIVATE_KEY_FILE cannot be read"):
        _configure({**production, "fintecture_private_key_file": tmp_path / "missing.pem"})


REFUSALS = [
    ({"admin_api_key": ""}, "ADMIN_API_KEY is missing or a placeholder"),
    ({"admin_api_key": "changeme"}, "ADMIN_API_KEY is missing or a placeholder"),
    ({"admin_api_key": " " * 30}, "ADMIN_API_KEY is missing or a placeholder"),
    ({"admin_api_key": "short-but-random-9f3"}, "ADMIN_API_KEY must be at least 24 characters"),
    ({"admin_api_key": "change-me-to-a-long-random-string"}, "ADMIN_API_KEY is missing or a placeholder"),
    ({"fintecture_app_secret": ""}, "FINTECTURE_APP_SECRET is missing or a placeholder"),
    ({"fintecture_app_secret": "secret"}, "FINTECTURE_APP_SECRET is missing or a placeholder"),
    ({"fintecture_app_id": ""}, "FINTECTURE_APP_ID is missing or a placeholder"),
    ({"fintecture_app_id": "xxx"}, "FINTECTURE_APP_ID is missing or a placeholder"),
    ({"fintecture_private_key": ""}, "FINTECTURE_PRIVATE_KEY (or FINTECTURE_PRIVATE_KEY_FILE) is missing"),
    ({"fintecture_private_key": "not a key at all"}, "FINTECTURE_PRIVATE_KEY is not a PEM private key"),
    ({"public_url": "http://pay.shop.example"}, "PUBLIC_URL must be an https URL"),
    ({"storefront_url": "http://shop.example/done"}, "STOREFRONT_URL must be an https URL"),
    ({"fintecture_api_url": "http://api.fintecture.com"}, "FINTECTURE_API_URL must be an https URL"),
    ({"public_url": "https://localhost:8000"}, "PUBLIC_URL points at a local host"),
    ({"storefront_url": "https://127.0.0.1/shop"}, "STOREFRONT_URL points at a local host"),
    ({"fintecture_api_url": "https://127.0.0.1:8100"}, "FINTECTURE_API_URL points at a local host"),
    ({"fintecture_api_url": "https://localhost:8100"}, "FINTECTURE_API_URL points at a local host"),
    ({"fintecture_api_url": "https://[::1]:8100"}, "FINTECTURE_API_URL points at a local host"),
    ({"fintecture_api_url": "https://0.0.0.0:8100"}, "FINTECTURE_API_URL points at a local host"),
    ({"fintecture_api_url": "https://api.localhost"}, "FINTECTURE_API_URL points at a local host"),
    ({"fintecture_api_url": "https://localhost.:8100"}, "FINTECTURE_API_URL points at a local host"),
    ({"fintecture_api_url": "https://[::ffff:127.0.0.1]:8100"}, "FINTECTURE_API_URL points at a local host"),
    ({"fintecture_api_url": "https://127.1:8100"}, "FINTECTURE_API_URL points at a local host"),
    ({"fintecture_api_url": "https://simulator:8100"}, "FINTECTURE_API_URL points at a local host"),
    (
        {"fintecture_api_url": "https://sim.shop.example/_sim/fintecture"},
        "FINTECTURE_API_URL points at the provider simulator",
    ),
    (
        {"fintecture_api_url": "https://api-sandbox.fintecture.com"},
        "FINTECTURE_API_URL is Fintecture's sandbox",
    ),
]


@pytest.mark.parametrize(("change", "message"), REFUSALS, ids=[m for _, m in REFUSALS])
def test_production_refuses_unsafe_settings(
    production: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _check({**production, **change})
    text = str(caught.value)
    assert text.startswith("Refusing to start in production:")
    assert message in text
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        _create_app({**production, **change})


def test_every_problem_is_listed_at_once(production: dict[str, Any]) -> None:
    settings, providers = _configure(
        {
            **production,
            "admin_api_key": "",
            "public_url": "http://127.0.0.1:8000",
            "fintecture_app_secret": "dev",
        }
    )
    problems = settings.production_problems() + providers["fintecture"].production_problems()
    assert any(p.startswith("ADMIN_API_KEY is missing") for p in problems)
    assert any(p.startswith("FINTECTURE_APP_SECRET is missing") for p in problems)
    assert any(p.startswith("PUBLIC_URL must be an https URL") for p in problems)
    assert any(p.startswith("PUBLIC_URL points at a local host") for p in problems)
    with pytest.raises(ConfigurationError) as caught:
        registry.check(settings, providers)
    assert all(problem in str(caught.value) for problem in problems)


def test_secrets_are_not_echoed_in_refusals(production: dict[str, Any], private_key_pem: str) -> None:
    settings, providers = _configure(
        {**production, "admin_api_key": "too-short-secret-value", "fintecture_api_url": "http://x.example"}
    )
    with pytest.raises(ConfigurationError) as caught:
        registry.check(settings, providers)
    text = str(caught.value)
    assert "too-short-secret-value" not in text
    assert "too-short-secret-value" not in repr(settings)
    for secret in (production["fintecture_app_secret"], private_key_pem, "PRIVATE KEY"):
        assert secret not in text
        assert secret not in repr(providers["fintecture"])


def test_sandbox_may_point_at_the_local_simulator() -> None:
    settings, providers = _configure(
        {"fintecture_api_url": "http://127.0.0.1:8100/", "public_url": "http://127.0.0.1:8000"}
    )
    registry.check(settings, providers)
    fintecture = providers["fintecture"]
    assert isinstance(fintecture, FintectureSettings)
    assert fintecture.base_url(production=False) == "http://127.0.0.1:8100"
    assert fintecture.base_url(production=True) == "http://127.0.0.1:8100"  # an override is an override


def test_the_api_url_follows_the_environment() -> None:
    assert _fintecture().base_url(production=False) == "https://api-sandbox.fintecture.com"
    assert _fintecture().base_url(production=True) == "https://api.fintecture.com"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"database_url": "mysql://root@db/shop"}, "database_url"),
        ({"public_url": "ftp://pay.shop.example"}, "public_url"),
        ({"provider_env": "live"}, "provider_env"),
        ({"payment_session_expiry_seconds": 10}, "payment_session_expiry_seconds"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"database_pool_size": 0}, "database_pool_size"),
        ({"database_pool_size": 101}, "database_pool_size"),
        ({"database_pool_timeout_seconds": 0}, "database_pool_timeout_seconds"),
        ({"inbox_concurrency": 0}, "inbox_concurrency"),
        ({"inbox_concurrency": 257}, "inbox_concurrency"),
        ({"inbox_lease_seconds": 4}, "inbox_lease_seconds"),
    ],
)
def test_malformed_values_are_rejected_when_read(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(**values)
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"api_url": "ftp://api.fintecture.com"}, "api_url"),
        ({"webhook_tolerance_seconds": 0}, "webhook_tolerance_seconds"),
        ({"webhook_tolerance_seconds": 3601}, "webhook_tolerance_seconds"),
    ],
)
def test_malformed_provider_values_are_rejected_when_read(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _fintecture(**values)
    assert field in str(caught.value)


def test_new_core_settings_defaults() -> None:
    settings = _settings()
    assert settings.default_provider == ""
    assert (settings.database_pool_size, settings.database_pool_timeout_seconds) == (20, 3.0)
    assert settings.database_connect_timeout_seconds == 1.5
    assert (settings.inbox_concurrency, settings.inbox_lease_seconds) == (16, 60)
    assert _fintecture().webhook_tolerance_seconds == 300


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/shop")
    monkeypatch.setenv("CORS_ORIGINS", "https://shop.example, https://www.shop.example")
    monkeypatch.setenv("WORKERS_ENABLED", "false")
    monkeypatch.setenv("DEFAULT_PROVIDER", " Fintecture ")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "20")
    monkeypatch.setenv("INBOX_CONCURRENCY", "4")
    monkeypatch.setenv("FINTECTURE_APP_ID", "app-from-env")
    monkeypatch.setenv("FINTECTURE_API_URL", "http://127.0.0.1:8100")
    monkeypatch.setenv("WEBHOOK_TOLERANCE_SECONDS", "120")
    settings = _settings()
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5432/shop"
    assert settings.cors_origins == ["https://shop.example", "https://www.shop.example"]
    assert settings.workers_enabled is False
    assert settings.default_provider == "fintecture"
    assert (settings.database_pool_size, settings.inbox_concurrency) == (20, 4)
    fintecture = _fintecture()
    assert (fintecture.app_id, fintecture.api_url) == ("app-from-env", "http://127.0.0.1:8100")
    assert fintecture.webhook_tolerance_seconds == 120  # the name it always had still works
    monkeypatch.setenv("FINTECTURE_WEBHOOK_TOLERANCE_SECONDS", "90")
    assert _fintecture().webhook_tolerance_seconds == 90  # the provider's own name wins
    assert _fintecture(webhook_tolerance_seconds=30).webhook_tolerance_seconds == 30  # then arguments


def test_provider_settings_are_read_from_dot_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "FINTECTURE_APP_ID=app-from-dotenv\nWEBHOOK_TOLERANCE_SECONDS=45\nADMIN_API_KEY=x\n"
    )
    fintecture = FintectureSettings()
    assert (fintecture.app_id, fintecture.webhook_tolerance_seconds) == ("app-from-dotenv", 45)


# --- .env.example -------------------------------------------------------------------------------

ENV_EXAMPLE = ROOT / ".env.example"


def _example_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s?([A-Z][A-Z0-9_]+)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_env_example_documents_every_setting() -> None:
    names = _example_names()
    for settings_class in settings_classes():
        for field, accepted in env_names(settings_class).items():
            assert accepted & names, f"{settings_class.__name__}.{field} is missing from .env.example"
    assert names - every_env_name() == set(), ".env.example names settings that do not exist"


def test_env_example_is_sandbox_safe_and_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    def example() -> tuple[Settings, dict[str, ProviderSettings]]:
        settings = Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
        providers = [
            plugin.settings_class(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
            for plugin in registry.PLUGINS
        ]
        return settings, registry.load_provider_settings(providers)

    sandbox, providers = example()
    assert sandbox.provider_env == "sandbox"
    registry.check(sandbox, providers)
    # Flipping only PROVIDER_ENV must not be enough to take real payments with the example's values.
    monkeypatch.setenv("PROVIDER_ENV", "production")
    production, providers = example()
    with pytest.raises(ConfigurationError, match="ADMIN_API_KEY is missing or a placeholder"):
        registry.check(production, providers)
