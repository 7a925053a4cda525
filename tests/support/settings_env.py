"""The environment variable names each settings class reads, for tests that isolate or document them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from app.config import Settings
from app.providers.registry import PLUGINS


def env_names(settings_class: type[BaseSettings]) -> dict[str, set[str]]:
    """Field name -> the environment variables that set it (upper case)."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names: dict[str, set[str]] = {}
    for field_name, info in settings_class.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names[field_name] = {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names[field_name] = {alias.upper()}
        else:
            names[field_name] = {(prefix + field_name).upper()}
    return names


def settings_classes() -> list[type[BaseSettings]]:
    """The core settings and every registered provider's."""
    return [Settings, *(plugin.settings_class for plugin in PLUGINS)]


def every_env_name() -> set[str]:
    return {name for cls in settings_classes() for names in env_names(cls).values() for name in names}


@pytest.fixture
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No setting leaks in from the machine's environment or a developer's .env."""
    for name in every_env_name():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
