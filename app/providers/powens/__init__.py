"""Powens Pay (ex-Budget Insight; payment initiation through the Powens webview) as a provider plug-in."""

from __future__ import annotations

from app.providers.base import ProviderPlugin
from app.providers.powens import docs
from app.providers.powens.client import CAPABILITIES, PowensProvider, build
from app.providers.powens.settings import PowensSettings

plugin = ProviderPlugin(
    name=PowensProvider.name,
    display_name="Powens Pay",
    settings_class=PowensSettings,
    build=build,
    capabilities=CAPABILITIES,
    return_parameters=docs.RETURN_PARAMETERS,
    webhook_docs=docs.WEBHOOK,
)

__all__ = ["PowensProvider", "PowensSettings", "plugin"]
