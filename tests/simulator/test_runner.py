"""Standalone runner: the demo application and config files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from simulator.config import load_config
from simulator.runner import ensure_demo_app, prepare
from tests.simulator.conftest import new_key, public_pem


def test_without_config_a_demo_app_is_created_once_and_reused(tmp_path: Path) -> None:
    config, lines = prepare("127.0.0.1", 8100, None, tmp_path)
    [app] = config.applications
    assert config.public_url == "http://127.0.0.1:8100"
    assert app.webhook_url == "http://127.0.0.1:8000/webhook"
    assert app.allows_redirect("http://127.0.0.1:8000/callback")
    private_key = tmp_path / "demo-private.pem"
    assert stat.S_IMODE(os.stat(private_key).st_mode) == 0o600
    text = "\n".join(lines)
    assert f"FINTECTURE_APP_ID={app.app_id}" in text
    assert f"FINTECTURE_PRIVATE_KEY_FILE={private_key.resolve()}" in text
    assert "FINTECTURE_API_URL=http://127.0.0.1:8100" in text and "PROVIDER_ENV=sandbox" in text

    again, _ = prepare("0.0.0.0", 8200, None, tmp_path)  # noqa: S104
    assert again.applications[0].app_id == app.app_id
    assert again.public_url == "http://127.0.0.1:8200"
    assert ensure_demo_app(tmp_path) == tmp_path / "demo-config.json"


def test_a_config_file_with_a_relative_key_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "shop.pem").write_text(public_pem(new_key()))
    config_path = tmp_path / "sim.json"
    config_path.write_text(
        json.dumps(
            {
                "public_url": "https://sim.example",
                "webhook_retry_base_delay": 0.5,
                "applications": [
                    {
                        "app_id": "shop",
                        "app_secret": "s3cret",
                        "public_key_file": "keys/shop.pem",
                        "redirect_uris": ["https://shop.example/callback"],
                        "webhook_url": "https://shop.example/webhook",
                        "mode": "strict",
                    }
                ],
            }
        )
    )
    config, lines = prepare("127.0.0.1", 8100, config_path, tmp_path / "unused")
    assert config.public_url == "https://sim.example"
    assert config.webhook_retry_base_delay == 0.5
    assert config.applications[0].mode == "strict"
    assert not (tmp_path / "unused").exists()
    assert "FINTECTURE_PRIVATE_KEY_FILE" not in "\n".join(lines)


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "production"},
        {"public_key_pem": "not a key"},
        {"redirect_uris": ["ftp://shop.example"]},
        {"unknown_field": 1},
    ],
)
def test_bad_config_files_are_refused(tmp_path: Path, change: dict[str, object]) -> None:
    app = {"app_id": "shop", "app_secret": "s", "public_key_pem": public_pem(new_key()), **change}
    config_path = tmp_path / "sim.json"
    config_path.write_text(json.dumps({"applications": [app]}))
    with pytest.raises((ValidationError, ValueError)):
        load_config(config_path)


def test_duplicate_app_ids_are_refused(tmp_path: Path) -> None:
    app = {"app_id": "shop", "app_secret": "s", "public_key_pem": public_pem(new_key())}
    config_path = tmp_path / "sim.json"
    config_path.write_text(json.dumps({"applications": [app, app]}))
    with pytest.raises(ValidationError, match="unique"):
        load_config(config_path)
