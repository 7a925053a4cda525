"""`checkout simulator`: run the simulator (every provider) on its own under uvicorn."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from simulator.config import SimulatorConfig, load_config
from simulator.powens.engine import API_PREFIX as POWENS_API_PREFIX
from simulator.powens.engine import WEBVIEW_PREFIX as POWENS_WEBVIEW_PREFIX

DEMO_CONFIG = "demo-config.json"
DEMO_PRIVATE_KEY = "demo-private.pem"
DEMO_PUBLIC_KEY = "demo-public.pem"


def _public_url(host: str, port: int) -> str:
    reachable = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - mapping, not binding
    return f"http://{reachable}:{port}"


def _demo_powens_client() -> dict[str, object]:
    return {
        "client_id": str(10_000_000 + secrets.randbelow(90_000_000)),
        "client_secret": secrets.token_urlsafe(24),
        "domain": "demo-sandbox",
        "name": "Demo Shop",
        "redirect_uris": ["http://127.0.0.1:8000/callback", "http://localhost:8000/callback"],
        "webhook_url": "http://127.0.0.1:8000/webhooks/powens",
        "webhook_secret": secrets.token_urlsafe(32),
        "beneficiary": {"name": "Demo Shop SAS", "iban": "FR7630006000011234567890189"},
    }


def ensure_demo_app(data_dir: Path) -> Path:
    """Create (once) the demo applications: a config file with a Fintecture application (and its
    RSA key pair) and a Powens client, under `data_dir`.

    They are registered for a checkout service on 127.0.0.1:8000 (`/callback`, `/payouts/callback`,
    `/webhook` and `/webhooks/powens`). Later runs reuse them, so the service's settings stay valid across
    restarts; a demo config written before Powens joined gets its Powens client added once.
    """
    config_path = data_dir / DEMO_CONFIG
    if config_path.exists():
        raw = json.loads(config_path.read_text())
        if isinstance(raw, dict) and "powens_applications" not in raw:
            raw["powens_applications"] = [_demo_powens_client()]
            config_path.write_text(json.dumps(raw, indent=2) + "\n")
        return config_path
    data_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path = data_dir / DEMO_PRIVATE_KEY
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(private_path, 0o600)
    (data_dir / DEMO_PUBLIC_KEY).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    demo = {
        "applications": [
            {
                "app_id": str(uuid.uuid4()),
                "app_secret": secrets.token_urlsafe(24),
                "public_key_file": DEMO_PUBLIC_KEY,
                "redirect_uris": [
                    "http://127.0.0.1:8000/callback",
                    "http://localhost:8000/callback",
                    "http://127.0.0.1:8000/payouts/callback",
                    "http://localhost:8000/payouts/callback",
                ],
                "webhook_url": "http://127.0.0.1:8000/webhook",
                "mode": "lenient",
                "name": "Demo Shop",
            }
        ],
        "powens_applications": [_demo_powens_client()],
    }
    config_path.write_text(json.dumps(demo, indent=2) + "\n")
    os.chmod(config_path, 0o600)
    return config_path


def prepare(
    host: str, port: int, config_path: Path | None, data_dir: Path
) -> tuple[SimulatorConfig, list[str]]:
    """The config to run with, and the lines to print about it."""
    lines = []
    if config_path is None:
        config_path = ensure_demo_app(data_dir)
        lines.append(f"No --config given: using the demo applications in {config_path}")
    raw = json.loads(config_path.read_text())
    overrides: dict[str, object] = {}
    if "public_url" not in raw:
        overrides["public_url"] = _public_url(host, port)
    config = load_config(config_path, **overrides)
    lines.append(f"Provider simulator on {config.public_url} (control API under /_sim, docs at /docs)")
    lines += _fintecture_lines(config, config_path)
    lines += _powens_lines(config)
    return config, lines


def _fintecture_lines(config: SimulatorConfig, config_path: Path) -> list[str]:
    if not config.applications:
        return ["  Fintecture: no application in the config"]
    lines = []
    demo_key = config_path.parent / DEMO_PRIVATE_KEY
    for app in config.applications:
        lines.append(f"  Fintecture application {app.name!r} ({app.mode})")
        lines.append(f"    FINTECTURE_APP_ID={app.app_id}")
        lines.append(f"    FINTECTURE_APP_SECRET={app.app_secret}")
        if config_path.name == DEMO_CONFIG and demo_key.exists():
            lines.append(f"    FINTECTURE_PRIVATE_KEY_FILE={demo_key.resolve()}")
        lines.append(f"    FINTECTURE_API_URL={config.public_url}")
        lines.append("    PROVIDER_ENV=sandbox")
    return lines


def _powens_lines(config: SimulatorConfig) -> list[str]:
    if not config.powens_applications:
        return ["  Powens: no client in the config (powens_applications)"]
    lines = []
    for app in config.powens_applications:
        cap = f", max {app.max_amount} per payment" if app.max_amount is not None else ""
        lines.append(f"  Powens client {app.name!r} (domain {app.domain}{cap})")
        lines.append(f"    POWENS_CLIENT_ID={app.client_id}")
        lines.append(f"    POWENS_CLIENT_SECRET={app.client_secret}")
        lines.append(f"    POWENS_DOMAIN={app.domain}")
        lines.append(f"    POWENS_API_URL={config.public_url}{POWENS_API_PREFIX}")
        lines.append(f"    POWENS_WEBVIEW_URL={config.public_url}{POWENS_WEBVIEW_PREFIX}")
        if app.webhook_secret:
            lines.append(f"    POWENS_WEBHOOK_SECRET={app.webhook_secret}")
        lines.append(f"    POWENS_BENEFICIARY_IBAN={app.beneficiary.iban}")
        lines.append(f"    POWENS_BENEFICIARY_NAME={app.beneficiary.name}")
    return lines


def run_standalone(host: str, port: int, config_path: Path | None, *, data_dir: Path | None = None) -> None:
    import uvicorn

    from simulator.app import create_app

    config, lines = prepare(host, port, config_path, data_dir or Path.cwd() / ".data" / "simulator")
    print("\n".join(lines), flush=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
