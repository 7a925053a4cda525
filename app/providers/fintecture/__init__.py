"""Fintecture (PIS: pay-by-bank sessions) as a provider plug-in."""

from __future__ import annotations

from app.providers.base import ProviderPlugin
from app.providers.fintecture import docs
from app.providers.fintecture.client import CAPABILITIES, FintectureProvider, build
from app.providers.fintecture.settings import FintectureSettings

plugin = ProviderPlugin(
    name=FintectureProvider.name,
    display_name="Fintecture",
    settings_class=FintectureSettings,
    build=build,
    capabilities=CAPABILITIES,
    return_parameters=docs.RETURN_PARAMETERS,
    webhook_docs=docs.WEBHOOK,
)

__all__ = ["FintectureProvider", "FintectureSettings", "plugin"]
