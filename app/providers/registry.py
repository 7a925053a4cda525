"""The one list of payment providers, and how the service configures and builds them at start-up.

Start-up, in this order:

    provider_settings = load_provider_settings()          # each plugin's own settings (env, .env)
    check(settings, provider_settings)                    # refuse unsafe or unusable settings
    providers = build_providers(settings, provider_settings, http)   # keys parsed here, once
    default = default_provider(settings, providers)

A provider is enabled when its settings say it is configured (`is_configured()`, e.g. its
application id is set). Nothing outside a provider's package and this list names a provider.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

import httpx

from app.config import ConfigurationError, Settings
from app.providers import fintecture, powens
from app.providers.base import (
    Provider,
    ProviderContext,
    ProviderPlugin,
    ProviderSettings,
    ReturnHint,
    ReturnParameter,
    ReturnRejected,
    WebhookDocs,
)

# THE list. Its order decides the default provider when DEFAULT_PROVIDER is empty.
PLUGINS: tuple[ProviderPlugin, ...] = (fintecture.plugin, powens.plugin)

# `POST /webhook`, the address merchants registered before each provider had its own
# (`POST /webhooks/{provider}`), stays this provider's.
LEGACY_WEBHOOK_PROVIDER = fintecture.plugin.name


def plugin_names() -> list[str]:
    return [plugin.name for plugin in PLUGINS]


def load_provider_settings(supplied: Sequence[ProviderSettings] = ()) -> dict[str, ProviderSettings]:
    """Each plugin's settings by plugin name: the supplied instance of its settings class if one is
    given, else read from the environment and `.env` (which raises pydantic's ValidationError for
    a malformed value, as `Settings()` does)."""
    chosen: dict[str, ProviderSettings] = {}
    for given in supplied:
        owners = [plugin for plugin in PLUGINS if isinstance(given, plugin.settings_class)]
        if not owners:
            raise TypeError(f"{type(given).__name__} are not the settings of any provider in the registry")
        name = owners[0].name
        if name in chosen:
            raise TypeError(f"settings for the {name} provider were supplied twice")
        chosen[name] = given
    for plugin in PLUGINS:
        if plugin.name not in chosen:
            chosen[plugin.name] = plugin.settings_class()
    return {plugin.name: chosen[plugin.name] for plugin in PLUGINS}


def _enabled(
    provider_settings: Mapping[str, ProviderSettings],
) -> list[tuple[ProviderPlugin, ProviderSettings]]:
    """The plugins whose settings are configured, in the registry's order."""
    enabled: list[tuple[ProviderPlugin, ProviderSettings]] = []
    for plugin in PLUGINS:
        settings = provider_settings.get(plugin.name)
        if settings is None:
            continue
        if not isinstance(settings, plugin.settings_class):
            raise TypeError(f"the {plugin.name} provider needs {plugin.settings_class.__name__}")
        if settings.is_configured():
            enabled.append((plugin, settings))
    return enabled


def _listing(title: str, problems: Sequence[str]) -> str:
    return title + ":\n" + "\n".join(f"  - {problem}" for problem in problems)


def check(settings: Settings, provider_settings: Mapping[str, ProviderSettings]) -> None:
    """Refuse to run with settings that would be unsafe or cannot work; call once at start-up.

    Production lists every problem at once: the core's, each enabled provider's, and the lack of
    any enabled provider. The sandbox refuses only what cannot work (e.g. an id without a secret);
    with no provider at all it starts, and opening a payment session answers a clear error.
    """
    enabled = _enabled(provider_settings)
    problems: list[str] = []
    if settings.default_provider:
        if settings.default_provider not in plugin_names():
            problems.append(
                f"DEFAULT_PROVIDER {settings.default_provider!r} is not a provider "
                f"(known: {', '.join(plugin_names())})"
            )
        elif settings.default_provider not in {plugin.name for plugin, _ in enabled}:
            problems.append(f"DEFAULT_PROVIDER {settings.default_provider!r} is not configured")
    if settings.is_production:
        problems = settings.production_problems() + problems
        for _, configured in enabled:
            problems += configured.production_problems()
        if not enabled:
            missing = [plugin.settings_class.enabled_by or plugin.name for plugin in PLUGINS]
            problems.append(
                "no payment provider is configured: "
                + ", ".join(f"{name} is missing or a placeholder" for name in missing)
            )
        if problems:
            raise ConfigurationError(_listing("Refusing to start in production", problems))
        return
    for _, configured in enabled:
        problems += configured.problems()
    if problems:
        raise ConfigurationError(_listing("Refusing to start", problems))


def build_providers(
    settings: Settings, provider_settings: Mapping[str, ProviderSettings], http: httpx.AsyncClient
) -> dict[str, Provider]:
    """The enabled providers' adapters by name (none in a sandbox without credentials). Private
    keys are parsed here, once per process; a key that cannot be used is a ConfigurationError."""
    context = ProviderContext(
        http=http,
        production=settings.is_production,
        callback_url=settings.callback_url,
        timeout_seconds=settings.provider_timeout_seconds,
        max_retries=settings.provider_max_retries,
    )
    providers: dict[str, Provider] = {}
    for plugin, configured in _enabled(provider_settings):
        try:
            providers[plugin.name] = plugin.build(configured, context)
        except ValueError as exc:
            raise ConfigurationError(f"The {plugin.name} provider cannot start: {exc}") from None
    return providers


def default_provider(settings: Settings, providers: Mapping[str, Provider]) -> str | None:
    """DEFAULT_PROVIDER when it is built, else the first built provider in the registry's order;
    None when there is none."""
    if settings.default_provider:
        return settings.default_provider if settings.default_provider in providers else None
    return next((plugin.name for plugin in PLUGINS if plugin.name in providers), None)


def enabled_plugins(providers: Mapping[str, Provider]) -> list[ProviderPlugin]:
    """The plugins of the built providers, in list order."""
    return [plugin for plugin in PLUGINS if plugin.name in providers]


def return_hints(providers: Mapping[str, Provider], query: Mapping[str, str]) -> dict[str, ReturnHint]:
    """What each enabled provider reads in a payer's (or payee's) return: only the providers that
    recognise the query as theirs answer."""
    hints: dict[str, ReturnHint] = {}
    for name, provider in providers.items():
        try:
            hints[name] = provider.parse_return(query)
        except ReturnRejected:
            continue
    return hints


def returned_state(hints: Mapping[str, ReturnHint]) -> str | None:
    """The one `state` the recognising providers read in a return; None when there is none or
    they disagree."""
    states = {hint.state for hint in hints.values() if hint.state}
    return next(iter(states)) if len(states) == 1 else None


def return_names(hints: Mapping[str, ReturnHint], provider: str, provider_id: str | None) -> bool:
    """Whether the return carries, read by `provider`, the provider's id we stored for it
    (compared in constant time)."""
    hint = hints.get(provider)
    return (
        hint is not None
        and provider_id is not None
        and hint.provider_session_id is not None
        and secrets.compare_digest(provider_id.encode(), hint.provider_session_id.encode())
    )


# --- what the API document says of the providers ---------------------------------------------------


def return_parameters() -> list[ReturnParameter]:
    """The query parameters any provider adds to a return, each name once, in the registry's order."""
    seen: dict[str, ReturnParameter] = {}
    for plugin in PLUGINS:
        for parameter in plugin.return_parameters:
            seen.setdefault(parameter.name, parameter)
    return list(seen.values())


def webhook_docs(name: str | None = None) -> list[tuple[ProviderPlugin, WebhookDocs]]:
    """Each provider's webhook scheme (only `name`'s when given), in the registry's order."""
    return [
        (plugin, plugin.webhook_docs)
        for plugin in PLUGINS
        if plugin.webhook_docs is not None and name in (None, plugin.name)
    ]
