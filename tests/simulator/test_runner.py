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


def test_the_demo_config_has_a_powens_client_and_the_printout_gives_its_settings(tmp_path: Path) -> None:
    config, lines = prepare("127.0.0.1", 8100, None, tmp_path)
    [client] = config.powens_applications
    assert client.webhook_url == "http://127.0.0.1:8000/webhooks/powens"
    assert client.allows_redirect("http://127.0.0.1:8000/callback") and client.webhook_secret
    text = "\n".join(lines)
    for line in (
        f"POWENS_CLIENT_ID={client.client_id}",
        f"POWENS_CLIENT_SECRET={client.client_secret}",
        f"POWENS_DOMAIN={client.domain}",
        "POWENS_API_URL=http://127.0.0.1:8100/powens/2.0",
        "POWENS_WEBVIEW_URL=http://127.0.0.1:8100/powens/webview",
        f"POWENS_WEBHOOK_SECRET={client.webhook_secret}",
        f"POWENS_BENEFICIARY_IBAN={client.beneficiary.iban}",
        f"POWENS_BENEFICIARY_NAME={client.beneficiary.name}",
    ):
        assert f"    {line}" in lines, line
    assert text.index("FINTECTURE_APP_ID") < text.index("POWENS_CLIENT_ID")
    again, _ = prepare("127.0.0.1", 8100, None, tmp_path)
    assert again.powens_applications[0].client_id == client.client_id


def test_a_demo_config_from_before_powens_gets_a_client_once(tmp_path: Path) -> None:
    ensure_demo_app(tmp_path)
    path = tmp_path / "demo-config.json"
    raw = json.loads(path.read_text())
    del raw["powens_applications"]
    path.write_text(json.dumps(raw))
    config, _ = prepare("127.0.0.1", 8100, None, tmp_path)
    assert config.applications[0].app_id == raw["applications"][0]["app_id"]
    [client] = config.powens_applications
    again, _ = prepare("127.0.0.1", 8100, None, tmp_path)
    assert again.powens_applications[0].client_id == client.client_id


def test_a_config_file_with_powens_clients(tmp_path: Path) -> None:
    config_path = tmp_path / "sim.json"
    config_path.write_text(
        json.dumps(
            {
                "powens_token_ttl_seconds": 600,
                "powens_phase_seconds": {"first_open_day": 30, "instant": 1},
                "powens_applications": [
                    {
                        "client_id": "42",
                        "client_secret": "s3cret",
                        "domain": "shop-sandbox.biapi.pro",
                        "redirect_uris": ["https://shop.example/callback"],
                        "webhook_url": "https://shop.example/webhooks/powens",
                        "webhook_secret": "whsec",
                        "webhook_gzip": True,
                        "max_amount": "10.00",
                    }
                ],
            }
        )
    )
    config, lines = prepare("127.0.0.1", 8100, config_path, tmp_path / "unused")
    [client] = config.powens_applications
    assert client.domain == "shop-sandbox" and client.webhook_gzip and str(client.max_amount) == "10.00"
    assert config.powens_token_ttl_seconds == 600 and config.powens_phase_seconds.instant == 1
    assert config.applications == []
    text = "\n".join(lines)
    assert "POWENS_DOMAIN=shop-sandbox" in text and "max 10.00 per payment" in text
    assert "Fintecture: no application" in text


@pytest.mark.parametrize(
    "change",
    [
        {"webhook_secret": None},
        {"webhook_url": "https://shop.example/webhooks/powens?token=1"},
        {"redirect_uris": ["https://shop.example/callback?x=1"]},
        {"domain": "not a domain"},
        {"max_amount": 0},
        {"unknown_field": 1},
    ],
)
def test_bad_powens_clients_are_refused(tmp_path: Path, change: dict[str, object]) -> None:
    client = {
        "client_id": "42",
        "client_secret": "s",
        "webhook_url": "https://shop.example/webhooks/powens",
        "webhook_secret": "whsec",
        **change,
    }
    config_path = tmp_path / "sim.json"
    config_path.write_text(json.dumps({"powens_applications": [client]}))
    with pytest.raises((ValidationError, ValueError)):
        load_config(config_path)


def test_duplicate_powens_client_ids_are_refused(tmp_path: Path) -> None:
    client = {"client_id": "42", "client_secret": "s"}
    config_path = tmp_path / "sim.json"
    config_path.write_text(json.dumps({"powens_applications": [client, client]}))
    with pytest.raises(ValidationError, match="unique"):
        load_config(config_path)
