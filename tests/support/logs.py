"""Capture what a module logs through structlog, as a list of event dicts.

`app.logging_setup.configure` runs again in every `create_app`, and a module's logger keeps the
configuration it was first used under (loggers are cached on first use), so a plain
`structlog.testing.capture_logs()` misses the lines of a module that logged in an earlier test.
`capture_module_logs` gives the modules fresh loggers for the duration of the capture.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
import structlog


@contextmanager
def capture_module_logs(
    monkeypatch: pytest.MonkeyPatch, *modules: ModuleType
) -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as entries:
        for module in modules:
            monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))
        yield entries
