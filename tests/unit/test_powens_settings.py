"""Powens settings: what the sandbox refuses, what production refuses, and how they are built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.config import ConfigurationError, Settings
from app.providers import registry
from app.providers.base import ProviderSettings
from app.providers.powens import PowensProvider, PowensSettings, plugin
from tests.support.settings_env import isolated_environment  # noqa: F401 - used through pytestmark

pytestmark = pytest.mark.usefixtures("isolated_environment")

IBAN = "FR76 3000 6000 0112 3456 7890 189"
ADMIN_KEY = "k3Yq9v2LwXp8Rt5Zb7Nc4Md6"


def powens(**values: Any) -> PowensSettings:
    return PowensSettings(_env_file=None, **values)  # type: ignore[call-arg]


def sandbox_values() -> dict[str, Any]:
    return {
        "client_id": "84213570",
        "client_secret": "w1Yc8Qm0xZ7rT2pL",
        "domain": "shop-sandbox",
        "beneficiary_iban": IBAN,
        "beneficiary_name": "ACME Corp.",
    }


def production_values() -> dict[str, Any]:
    return {
        **sandbox_values(),
        "domain": "shop",
        "webhook_secret": "b8f1e2d4c6a80719e3f5",
    }


def core(production: bool = False) -> Settings:
    values: dict[str, Any] = {}
    if production:
        values = {
            "provider_env": "production",
            "public_url": "https://pay.shop.example",
            "storefront_url": "https://shop.example/done",
            "admin_api_key": ADMIN_KEY,
        }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def providers(settings: PowensSettings) -> dict[str, ProviderSettings]:
    return registry.load_provider_settings([settings])


def test_the_plugin() -> None:
    assert plugin.name == "powens"
    assert plugin.display_name == "Powens Pay"
    assert plugin.settings_class is PowensSettings
    assert PowensSettings.enabled_by == "POWENS_CLIENT_ID"
    capabilities = plugin.capabilities
    assert (capabilities.pay_in, capabilities.cancel, capabilities.refund, capabilities.payout) == (
        True,
        True,
        False,
        False,
    )
    assert "powens" in registry.plugin_names()
    assert registry.plugin_names().index("powens") > registry.plugin_names().index("fintecture")


def test_defaults_are_not_configured_and_start() -> None:
    settings = powens()
    assert settings.is_configured() is False
    assert settings.problems() == []
    assert settings.webhook_tolerance_seconds == 600
    assert settings.language == "fr"
    registry.check(core(), providers(settings))


def test_the_environment_enables_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWENS_CLIENT_ID", "84213570")
    monkeypatch.setenv("POWENS_DOMAIN", "shop-sandbox")
    monkeypatch.setenv("POWENS_WEBHOOK_TOLERANCE_SECONDS", "120")
    settings = registry.load_provider_settings()["powens"]
    assert isinstance(settings, PowensSettings)
    assert settings.is_configured()
    assert settings.domain == "shop-sandbox"
    assert settings.webhook_tolerance_seconds == 120


def test_urls_default_from_the_domain() -> None:
    settings = powens(**sandbox_values())
    assert settings.base_url() == "https://shop-sandbox.biapi.pro/2.0"
    assert settings.webview_base_url() == "https://webview.powens.com"
    overridden = powens(
        **sandbox_values(),
        api_url="http://127.0.0.1:8100/powens/2.0/",
        webview_url="http://127.0.0.1:8100/wv/",
    )
    assert overridden.base_url() == "http://127.0.0.1:8100/powens/2.0"
    assert overridden.webview_base_url() == "http://127.0.0.1:8100/wv"


def test_a_full_host_as_domain_is_reduced_to_the_domain() -> None:
    assert powens(domain="Shop-Sandbox.biapi.pro").domain == "shop-sandbox"


def test_the_iban_is_normalised_and_compacted() -> None:
    settings = powens(**sandbox_values())
    assert settings.beneficiary_iban == "FR7630006000011234567890189"
    assert settings.compact_iban() == "FR7630006000011234567890189"


async def test_sandbox_settings_start_and_build() -> None:
    settings = powens(**sandbox_values())
    assert settings.problems() == []
    registry.check(core(), providers(settings))
    async with httpx.AsyncClient() as http:
        built = registry.build_providers(core(), providers(settings), http)
    assert isinstance(built["powens"], PowensProvider)
    assert "w1Yc8Qm0xZ7rT2pL" not in repr(built["powens"])


SANDBOX_REFUSALS = [
    ({"client_secret": ""}, "POWENS_CLIENT_SECRET is required when POWENS_CLIENT_ID is set"),
    ({"domain": ""}, "POWENS_DOMAIN is required when POWENS_CLIENT_ID is set"),
    ({"beneficiary_iban": ""}, "POWENS_BENEFICIARY_IBAN is required when POWENS_CLIENT_ID is set"),
    ({"beneficiary_iban": "FR7630006000011234567890188"}, "POWENS_BENEFICIARY_IBAN is not a valid IBAN"),
    ({"beneficiary_iban": "FR76300060000112345678"}, "POWENS_BENEFICIARY_IBAN is not a valid IBAN"),
    ({"beneficiary_iban": "XX7630006000011234567890189"}, "POWENS_BENEFICIARY_IBAN is not a valid IBAN"),
    ({"beneficiary_iban": "not an iban"}, "POWENS_BENEFICIARY_IBAN is not a valid IBAN"),
    ({"beneficiary_name": ""}, "POWENS_BENEFICIARY_NAME is required when POWENS_CLIENT_ID is set"),
    ({"beneficiary_name": "   "}, "POWENS_BENEFICIARY_NAME is required when POWENS_CLIENT_ID is set"),
]


@pytest.mark.parametrize(("change", "message"), SANDBOX_REFUSALS, ids=[m for _, m in SANDBOX_REFUSALS])
def test_the_sandbox_refuses(change: dict[str, Any], message: str) -> None:
    settings = powens(**{**sandbox_values(), **change})
    assert any(message in problem for problem in settings.problems())
    with pytest.raises(ConfigurationError, match=message):
        registry.check(core(), providers(settings))


@pytest.mark.parametrize(("change", "message"), SANDBOX_REFUSALS, ids=[m for _, m in SANDBOX_REFUSALS])
def test_production_refuses_what_the_sandbox_refuses(change: dict[str, Any], message: str) -> None:
    settings = powens(**{**production_values(), **change})
    if "CLIENT_SECRET" in message:
        message = "POWENS_CLIENT_SECRET is missing or a placeholder"
    assert any(message in problem for problem in settings.production_problems())


def test_safe_production_settings_start() -> None:
    settings = powens(**production_values())
    assert settings.production_problems() == []
    registry.check(core(production=True), providers(settings))


PRODUCTION_REFUSALS = [
    ({"client_secret": ""}, "POWENS_CLIENT_SECRET is missing or a placeholder"),
    ({"client_secret": "changeme"}, "POWENS_CLIENT_SECRET is missing or a placeholder"),
    (
        {"webhook_secret": ""},
        "POWENS_WEBHOOK_SECRET (or POWENS_WEBHOOK_SECRET_FILE) is missing or a placeholder",
    ),
    ({"webhook_secret": "secret"}, "POWENS_WEBHOOK_SECRET (or POWENS_WEBHOOK_SECRET_FILE) is missing"),
    (
        {"webhook_secret": "change-me-please"},
        "POWENS_WEBHOOK_SECRET (or POWENS_WEBHOOK_SECRET_FILE) is missing",
    ),
    ({"client_id": "xxx"}, "POWENS_CLIENT_ID is missing or a placeholder"),
    ({"client_id": "test"}, "POWENS_CLIENT_ID is missing or a placeholder"),
    ({"domain": "shop-sandbox"}, "POWENS_DOMAIN 'shop-sandbox' is a Powens sandbox domain"),
    ({"api_url": "http://shop.biapi.pro/2.0"}, "POWENS_API_URL must be an https URL"),
    ({"api_url": "https://127.0.0.1:8100/2.0"}, "POWENS_API_URL points at a local host"),
    ({"api_url": "https://localhost:8100"}, "POWENS_API_URL points at a local host"),
    ({"api_url": "https://simulator:8100"}, "POWENS_API_URL points at a local host"),
    ({"api_url": "https://sim.example/_sim/powens"}, "POWENS_API_URL points at the provider simulator"),
    ({"webview_url": "http://webview.powens.com"}, "POWENS_WEBVIEW_URL must be an https URL"),
    ({"webview_url": "https://[::1]:8100"}, "POWENS_WEBVIEW_URL points at a local host"),
    ({"webview_url": "https://simulator.example/wv"}, "POWENS_WEBVIEW_URL points at the provider simulator"),
]


@pytest.mark.parametrize(("change", "message"), PRODUCTION_REFUSALS, ids=[m for _, m in PRODUCTION_REFUSALS])
def test_production_refuses(change: dict[str, Any], message: str) -> None:
    settings = powens(**{**production_values(), **change})
    assert any(message in problem for problem in settings.production_problems()), (
        settings.production_problems()
    )
    with pytest.raises(ConfigurationError) as caught:
        registry.check(core(production=True), providers(settings))
    assert message in str(caught.value)


def test_the_webhook_secret_can_come_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "powens-webhook-secret"
    secret_file.write_text("b8f1e2d4c6a80719e3f5\n")
    values = production_values()
    values.pop("webhook_secret")
    settings = powens(**values, webhook_secret_file=secret_file)
    assert settings.webhook_secret.get_secret_value() == "b8f1e2d4c6a80719e3f5"
    assert settings.production_problems() == []
    # The inline value wins when both are given.
    both = powens(**values, webhook_secret="inline-9b1e77a05c4d", webhook_secret_file=secret_file)
    assert both.webhook_secret.get_secret_value() == "inline-9b1e77a05c4d"


def test_an_unreadable_webhook_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="POWENS_WEBHOOK_SECRET_FILE cannot be read"):
        powens(**sandbox_values(), webhook_secret_file=tmp_path / "missing")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("domain", "shop sandbox"),
        ("domain", "shop/../x"),
        ("domain", "-shop"),
        ("api_url", "ftp://shop.biapi.pro"),
        ("webview_url", "webview.powens.com"),
        ("language", "fra"),
        ("language", "f1"),
        ("webhook_tolerance_seconds", 0),
        ("webhook_tolerance_seconds", 3601),
    ],
)
def test_malformed_values_are_refused_when_read(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        powens(**{**sandbox_values(), field: value})


async def test_build_refuses_what_cannot_work() -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigurationError, match="POWENS_BENEFICIARY_IBAN is not a valid IBAN"):
            registry.build_providers(
                core(), providers(powens(**{**sandbox_values(), "beneficiary_iban": "FR00"})), http
            )
