"""Builds the configured provider adapters once at start-up (keys parsed here, once)."""

from __future__ import annotations

import httpx

from app.config import ConfigurationError, Settings
from app.providers.base import Provider
from app.providers.fintecture.client import FintectureProvider
from app.providers.fintecture.signing import load_private_key


def build_providers(settings: Settings, http: httpx.AsyncClient) -> dict[str, Provider]:
    """Adapters by name. Sandbox without Fintecture credentials gets none (payments then answer a
    clear error); production refuses to start without what signing and webhooks need."""
    providers: dict[str, Provider] = {}
    app_id = settings.fintecture_app_id.strip()
    pem = settings.fintecture_private_key.get_secret_value().strip()
    if not app_id:
        if settings.is_production:
            raise ConfigurationError("Refusing to start in production: FINTECTURE_APP_ID is missing")
        return providers
    if not settings.fintecture_app_secret.get_secret_value():
        raise ConfigurationError("FINTECTURE_APP_SECRET is required when FINTECTURE_APP_ID is set")
    if settings.is_production and not pem:
        raise ConfigurationError(
            "Refusing to start in production: FINTECTURE_PRIVATE_KEY (or FINTECTURE_PRIVATE_KEY_FILE) "
            "is required to sign requests and verify webhooks"
        )
    try:
        private_key = load_private_key(pem) if pem else None
    except ValueError as exc:
        raise ConfigurationError(f"FINTECTURE_PRIVATE_KEY: {exc}") from None
    try:
        providers["fintecture"] = FintectureProvider.from_settings(settings, http, private_key=private_key)
    except ValueError as exc:
        raise ConfigurationError(f"Fintecture settings: {exc}") from None
    return providers
