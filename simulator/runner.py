"""`checkout simulator`: run the simulator on its own under uvicorn."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from simulator.config import SimulatorConfig, load_config

DEMO_CONFIG = "demo-config.json"
DEMO_PRIVATE_KEY = "demo-private.pem"
DEMO_PUBLIC_KEY = "demo-public.pem"


def _public_url(host: str, port: int) -> str:
    reachable = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - mapping, not binding
    return f"http://{reachable}:{port}"


def ensure_demo_app(data_dir: Path) -> Path:
    """Create (once) a demo application: config file plus its RSA key pair, under `data_dir`.

    It is registered for a checkout service on 127.0.0.1:8000 (`/callback`, `/webhook`). Later runs
    reuse it, so the service's settings stay valid across restarts.
    """
    config_path = data_dir / DEMO_CONFIG
    if config_path.exists():
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
                "redirect_uris": ["http://127.0.0.1:8000/callback", "http://localhost:8000/callback"],
                "webhook_url": "http://127.0.0.1:8000/webhook",
                "mode": "lenient",
                "name": "Demo Shop",
            }
        ]
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
        lines.append(f"No --config given: using the demo application in {config_path}")
    raw = json.loads(config_path.read_text())
    overrides: dict[str, object] = {}
    if "public_url" not in raw:
        overrides["public_url"] = _public_url(host, port)
    config = load_config(config_path, **overrides)
    lines.append(f"Fintecture simulator on {config.public_url} (control API under /_sim, docs at /docs)")
    demo_key = config_path.parent / DEMO_PRIVATE_KEY
    for app in config.applications:
        lines.append(f"  application {app.name!r} ({app.mode})")
        lines.append(f"    FINTECTURE_APP_ID={app.app_id}")
        lines.append(f"    FINTECTURE_APP_SECRET={app.app_secret}")
        if config_path.name == DEMO_CONFIG and demo_key.exists():
            lines.append(f"    FINTECTURE_PRIVATE_KEY_FILE={demo_key.resolve()}")
        lines.append(f"    FINTECTURE_API_URL={config.public_url}")
        lines.append("    PROVIDER_ENV=sandbox")
    return config, lines


def run_standalone(host: str, port: int, config_path: Path | None, *, data_dir: Path | None = None) -> None:
    import uvicorn

    from simulator.app import create_app

    config, lines = prepare(host, port, config_path, data_dir or Path.cwd() / ".data" / "simulator")
    print("\n".join(lines), flush=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
