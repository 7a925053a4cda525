"""The provider registry: which providers are enabled, what start-up refuses, what gets built."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from app.config import ConfigurationError, Settings
from app.providers import registry
from app.providers.base import (
    Capabilities,
    CreatedSession,
    PaymentSnapshot,
    ProviderContext,
    ProviderPlugin,
    ProviderSettings,
    ReturnHint,
    SessionRequest,
    WebhookHint,
    WebhookRequest,
)
from app.providers.fintecture import FintectureProvider, FintectureSettings
from app.providers.fintecture.signing import generate_key_pair_pem
from tests.support.settings_env import isolated_environment  # noqa: F401 - used through pytestmark

APP_ID = "2dfdcf57-5b2f-4309-846f-913d0b2802cf"
BROKEN_PEM = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
ADMIN_KEY = "k3Yq9v2LwXp8Rt5Zb7Nc4Md6"


pytestmark = pytest.mark.usefixtures("isolated_environment")


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair_pem()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def production(**values: Any) -> Settings:
    safe = {
        "provider_env": "production",
        "public_url": "https://pay.shop.example",
        "storefront_url": "https://shop.example/done",
        "admin_api_key": ADMIN_KEY,
    }
    return settings(**{**safe, **values})


def fintecture(**values: Any) -> dict[str, ProviderSettings]:
    return registry.load_provider_settings([FintectureSettings(_env_file=None, **values)])  # type: ignore[call-arg]


def signs(adapter: object, public_pem: bytes) -> bool:
    """Whether the adapter's requests carry a §2 signature that verifies with this public key."""
    assert isinstance(adapter, FintectureProvider)
    request = adapter.transport.signed_request("GET", "/pis/v2/payments/abc")
    if "signature" not in request.headers:
        return False
    params = dict(re.findall(r'(\w+)="([^"]*)"', request.headers["signature"]))
    values = {
        "(request-target)": f"get {request.url.raw_path.decode()}",
        "date": request.headers["date"],
        "x-request-id": request.headers["x-request-id"],
    }
    text = "\n".join(f"{name}: {values[name]}" for name in params["headers"].split(" "))
    public_key = serialization.load_pem_public_key(public_pem)
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        base64.b64decode(params["signature"]), text.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return True


# --- The list ------------------------------------------------------------------------------------


def test_the_list_names_each_provider_once() -> None:
    names = registry.plugin_names()
    assert names == ["fintecture", "powens"]
    assert len(set(names)) == len(names)
    for plugin in registry.PLUGINS:
        assert issubclass(plugin.settings_class, ProviderSettings)
        assert plugin.settings_class.enabled_by
    assert registry.PLUGINS[0].capabilities == FintectureProvider.capabilities


def test_settings_not_supplied_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.load_provider_settings()["fintecture"].is_configured() is False
    monkeypatch.setenv("FINTECTURE_APP_ID", APP_ID)
    loaded = registry.load_provider_settings()["fintecture"]
    assert isinstance(loaded, FintectureSettings)
    assert loaded.app_id == APP_ID
    supplied = FintectureSettings(_env_file=None, app_id="supplied")  # type: ignore[call-arg]
    assert registry.load_provider_settings([supplied])["fintecture"] is supplied


def test_settings_of_no_provider_or_twice_are_refused() -> None:
    class Stray(ProviderSettings):
        def is_configured(self) -> bool:
            return True

    with pytest.raises(TypeError, match="not the settings of any provider"):
        registry.load_provider_settings([Stray(_env_file=None)])  # type: ignore[call-arg]
    one = FintectureSettings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="twice"):
        registry.load_provider_settings([one, one])


# --- check ---------------------------------------------------------------------------------------


def test_production_with_no_provider_is_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        registry.check(production(), fintecture())
    text = str(caught.value)
    assert text.startswith("Refusing to start in production:")
    assert "no payment provider is configured: FINTECTURE_APP_ID is missing or a placeholder" in text
    with pytest.raises(ConfigurationError, match="no payment provider is configured"):
        registry.check(production(), {})


def test_production_lists_core_and_provider_problems_together() -> None:
    with pytest.raises(ConfigurationError) as caught:
        registry.check(production(admin_api_key=""), fintecture(app_id=APP_ID))
    text = str(caught.value)
    for message in (
        "ADMIN_API_KEY is missing or a placeholder",
        "FINTECTURE_APP_SECRET is missing or a placeholder",
        "FINTECTURE_PRIVATE_KEY (or FINTECTURE_PRIVATE_KEY_FILE) is missing or a placeholder",
    ):
        assert f"  - {message}" in text
    assert "no payment provider is configured" not in text


def test_sandbox_without_a_provider_starts() -> None:
    registry.check(settings(), fintecture())
    registry.check(settings(), {})


def test_sandbox_id_without_a_secret_is_refused() -> None:
    with pytest.raises(
        ConfigurationError, match="FINTECTURE_APP_SECRET is required when FINTECTURE_APP_ID is set"
    ):
        registry.check(settings(), fintecture(app_id=APP_ID))


def test_default_provider_must_be_a_configured_provider() -> None:
    registry.check(settings(default_provider="fintecture"), fintecture(app_id=APP_ID, app_secret="s"))
    with pytest.raises(ConfigurationError, match="DEFAULT_PROVIDER 'acme' is not a provider"):
        registry.check(settings(default_provider="acme"), fintecture(app_id=APP_ID, app_secret="s"))
    with pytest.raises(ConfigurationError, match="DEFAULT_PROVIDER 'powens' is not configured"):
        registry.check(settings(default_provider="powens"), fintecture(app_id=APP_ID, app_secret="s"))
    with pytest.raises(ConfigurationError, match="DEFAULT_PROVIDER 'fintecture' is not configured"):
        registry.check(settings(default_provider="fintecture"), fintecture())


def test_settings_of_the_wrong_class_are_refused() -> None:
    class Other(ProviderSettings):
        def is_configured(self) -> bool:
            return True

    with pytest.raises(TypeError, match="FintectureSettings"):
        registry.check(settings(), {"fintecture": Other(_env_file=None)})  # type: ignore[call-arg]


# --- build_providers -----------------------------------------------------------------------------


async def test_sandbox_without_credentials_builds_nothing(http: httpx.AsyncClient) -> None:
    built = registry.build_providers(settings(), fintecture(), http)
    assert built == {}
    assert registry.default_provider(settings(), built) is None


async def test_sandbox_without_key_builds_an_unsigned_adapter(
    http: httpx.AsyncClient, key_pair: tuple[bytes, bytes]
) -> None:
    built = registry.build_providers(settings(), fintecture(app_id=APP_ID, app_secret="s"), http)
    adapter = built["fintecture"]
    assert isinstance(adapter, FintectureProvider)
    assert adapter.name == "fintecture"
    assert signs(adapter, key_pair[1]) is False
    assert registry.default_provider(settings(), built) == "fintecture"


async def test_the_key_is_loaded_once_and_signs(
    http: httpx.AsyncClient, key_pair: tuple[bytes, bytes]
) -> None:
    values = {"app_id": APP_ID, "app_secret": "s", "private_key": key_pair[0].decode()}
    built = registry.build_providers(settings(), fintecture(**values), http)
    assert signs(built["fintecture"], key_pair[1])


async def test_the_key_file_is_read(
    http: httpx.AsyncClient, key_pair: tuple[bytes, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(key_pair[0])
    built = registry.build_providers(
        settings(), fintecture(app_id=APP_ID, app_secret="s", private_key_file=path), http
    )
    assert signs(built["fintecture"], key_pair[1])


async def test_production_without_key_refuses_to_start(http: httpx.AsyncClient) -> None:
    providers = fintecture(app_id=APP_ID, app_secret="9b1e77a0-5c4d-4e8f-a1b2-c3d4e5f60718")
    with pytest.raises(
        ConfigurationError, match=r"Refusing to start in production:\n(.*\n)*.*FINTECTURE_PRIVATE_KEY"
    ):
        registry.check(production(), providers)
    # Even when nobody called check first, no unsigned adapter is built for production.
    with pytest.raises(ConfigurationError, match="private key"):
        registry.build_providers(production(), providers, http)


async def test_bad_key_or_missing_secret(http: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigurationError, match="FINTECTURE_PRIVATE_KEY") as info:
        registry.build_providers(
            settings(), fintecture(app_id=APP_ID, app_secret="s", private_key=SecretStr(BROKEN_PEM)), http
        )
    assert "AAAA" not in str(info.value)
    with pytest.raises(ConfigurationError, match="FINTECTURE_APP_SECRET"):
        registry.build_providers(settings(), fintecture(app_id=APP_ID), http)


async def test_the_adapter_gets_the_core_settings(http: httpx.AsyncClient) -> None:
    built = registry.build_providers(
        settings(provider_timeout_seconds=2.5, provider_max_retries=1),
        fintecture(app_id=APP_ID, app_secret="s", webhook_tolerance_seconds=42),
        http,
    )
    adapter = built["fintecture"]
    assert isinstance(adapter, FintectureProvider)
    request = adapter.transport.signed_request("GET", "/pis/v2/payments/abc")
    assert request.extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}
    assert str(request.url) == "https://api-sandbox.fintecture.com/pis/v2/payments/abc"


# --- Several providers: only the configured ones are built -----------------------------------------


class SecondSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="SECOND_")
    enabled_by: ClassVar[str] = "SECOND_CLIENT_ID"

    client_id: str = ""

    def is_configured(self) -> bool:
        return bool(self.client_id)

    def production_problems(self) -> list[str]:
        return [] if self.client_id.startswith("live-") else ["SECOND_CLIENT_ID is not a live client"]


NO_EXTRAS = Capabilities()


@dataclass
class SecondProvider:
    context: ProviderContext
    name: str = "second"
    capabilities: Capabilities = NO_EXTRAS

    async def create_session(self, request: SessionRequest) -> CreatedSession:
        raise NotImplementedError

    async def get_payment(self, provider_session_id: str) -> PaymentSnapshot:
        raise NotImplementedError

    def verify_webhook(self, request: WebhookRequest, now: datetime) -> WebhookHint:
        raise NotImplementedError

    def parse_return(self, query: Mapping[str, str]) -> ReturnHint:
        raise NotImplementedError


def build_second(settings: SecondSettings, context: ProviderContext) -> SecondProvider:
    return SecondProvider(context)


@pytest.fixture
def two_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    second = ProviderPlugin(
        name="second", settings_class=SecondSettings, build=build_second, capabilities=NO_EXTRAS
    )
    monkeypatch.setattr(registry, "PLUGINS", (*registry.PLUGINS, second))


def both(second_client_id: str = "", **fintecture_values: Any) -> dict[str, ProviderSettings]:
    return registry.load_provider_settings(
        [
            FintectureSettings(_env_file=None, **fintecture_values),  # type: ignore[call-arg]
            SecondSettings(_env_file=None, client_id=second_client_id),  # type: ignore[call-arg]
        ]
    )


@pytest.mark.usefixtures("two_plugins")
async def test_only_configured_providers_are_built(http: httpx.AsyncClient) -> None:
    only_second = registry.build_providers(settings(), both("sandbox-client"), http)
    assert list(only_second) == ["second"]
    assert registry.default_provider(settings(), only_second) == "second"

    everything = registry.build_providers(
        settings(), both("sandbox-client", app_id=APP_ID, app_secret="s"), http
    )
    assert list(everything) == ["fintecture", "second"]
    assert registry.default_provider(settings(), everything) == "fintecture"  # the list's order
    assert registry.default_provider(settings(default_provider="second"), everything) == "second"

    second = everything["second"]
    assert isinstance(second, SecondProvider)
    assert second.context.http is http
    assert second.context.production is False
    assert second.context.callback_url == "http://127.0.0.1:8000/callback"


@pytest.mark.usefixtures("two_plugins")
def test_production_checks_only_the_enabled_providers_and_names_every_id() -> None:
    registry.check(production(), both("live-client"))  # Fintecture not enabled: not checked
    with pytest.raises(ConfigurationError) as caught:
        registry.check(production(), both("test-client"))
    assert "SECOND_CLIENT_ID is not a live client" in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        registry.check(production(), both())
    assert (
        "no payment provider is configured: FINTECTURE_APP_ID is missing or a placeholder, "
        "POWENS_CLIENT_ID is missing or a placeholder, SECOND_CLIENT_ID is missing or a placeholder"
    ) in str(caught.value)
