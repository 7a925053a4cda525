"""`checkout demo`: everything a newcomer needs to pay an order in a browser, on localhost.

An embedded PostgreSQL (unless DATABASE_URL is set), the provider simulator (Fintecture and Powens
Pay) with a generated key pair and demo credentials, the checkout service with both providers, and
the demo storefront page at `/`, which lets the payer choose. This module
is CLI-only: the service itself never imports the simulator.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from pathlib import Path

from app.config import Settings
from app.devdb import start_embedded_postgres, with_database

DEMO_APP_ID = "demo-shop"
DEMO_POWENS_CLIENT = "demo-shop-powens"
DEMO_POWENS_DOMAIN = "demo-shop-sandbox"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _ensure_database(server_url: str, name: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    conn = await asyncpg.connect(
        user=url.username, host=url.query.get("host") or url.host, port=url.port, database="postgres"
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _demo_secret(path: Path) -> str:
    """A random secret generated on first run and kept, so restarts keep working."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _demo_keys(directory: Path) -> tuple[str, str]:
    from app.providers.fintecture.signing import generate_key_pair_pem

    private_path, public_path = directory / "private.pem", directory / "public.pem"
    if not private_path.exists():
        private_pem, public_pem = generate_key_pair_pem()
        private_path.write_bytes(private_pem)
        private_path.chmod(0o600)
        public_path.write_bytes(public_pem)
    return private_path.read_text(), public_path.read_text()


async def _seed(settings: Settings) -> None:
    from app.catalog.repository import seed_demo_products
    from app.db import create_engine, create_sessionmaker, transaction

    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with transaction(create_sessionmaker(engine)) as db:
            await seed_demo_products(db)
    finally:
        await engine.dispose()


def run_demo(*, host: str, port: int, simulator_port: int, data_dir: Path) -> None:
    import uvicorn

    from app.cli import migrate
    from app.main import create_app
    from app.payouts.service import callback_url as payout_callback_url
    from app.providers.fintecture.settings import FintectureSettings
    from app.providers.powens.settings import PowensSettings
    from app.server import server_config
    from simulator.app import create_app as create_simulator
    from simulator.config import AppConfig, PowensAppConfig, PowensPhaseSeconds, SimulatorConfig
    from simulator.powens.engine import API_PREFIX as POWENS_API_PREFIX
    from simulator.powens.engine import WEBVIEW_PREFIX as POWENS_WEBVIEW_PREFIX

    data_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir = data_dir / "demo"
    secrets_dir.mkdir(exist_ok=True)

    database_url = os.environ.get("DATABASE_URL")
    pg_server = None
    if not database_url:
        server_url, pg_server = start_embedded_postgres(data_dir / "pg")
        asyncio.run(_ensure_database(server_url, "checkout"))
        database_url = with_database(server_url, "checkout")

    service_url = f"http://{host}:{port}"
    simulator_url = f"http://{host}:{simulator_port}"
    private_pem, public_pem = _demo_keys(secrets_dir)
    app_secret = _demo_secret(secrets_dir / "app_secret")
    admin_key = _demo_secret(secrets_dir / "admin_api_key")

    settings = Settings(
        provider_env="sandbox",
        database_url=database_url,
        public_url=service_url,
        storefront_url=f"{service_url}/checkout/result",
        admin_api_key=admin_key,
        demo_storefront=True,
        sweeper_interval_seconds=10,
        sweeper_stale_after_seconds=15,
    )
    fintecture = FintectureSettings(
        app_id=DEMO_APP_ID, app_secret=app_secret, private_key=private_pem, api_url=simulator_url
    )
    powens_secret = _demo_secret(secrets_dir / "powens_client_secret")
    powens_webhook_secret = _demo_secret(secrets_dir / "powens_webhook_secret")
    powens_app = PowensAppConfig(
        client_id=DEMO_POWENS_CLIENT,
        client_secret=powens_secret,
        domain=DEMO_POWENS_DOMAIN,
        redirect_uris=[settings.callback_url],
        webhook_url=f"{service_url}/webhooks/powens",
        webhook_secret=powens_webhook_secret,
    )
    powens = PowensSettings(
        client_id=DEMO_POWENS_CLIENT,
        client_secret=powens_secret,
        domain=DEMO_POWENS_DOMAIN,
        api_url=f"{simulator_url}{POWENS_API_PREFIX}",
        webview_url=f"{simulator_url}{POWENS_WEBVIEW_PREFIX}",
        webhook_secret=powens_webhook_secret,
        beneficiary_iban=powens_app.beneficiary.iban,
        beneficiary_name=powens_app.beneficiary.name,
    )
    migrate(settings.database_url)
    asyncio.run(_seed(settings))

    simulator_config = SimulatorConfig(
        public_url=simulator_url,
        pending_settle_seconds=20,
        applications=[
            AppConfig(
                app_id=DEMO_APP_ID,
                app_secret=app_secret,
                public_key_pem=public_pem,
                redirect_uris=[settings.callback_url, payout_callback_url(settings)],
                webhook_url=f"{service_url}/webhooks/fintecture",
                mode="lenient",
            )
        ],
        powens_applications=[powens_app],
        # The test connector's bank phases, short enough to watch a payment settle in the shop.
        powens_phase_seconds=PowensPhaseSeconds(first_open_day=5, instant=2),
    )
    servers = [
        uvicorn.Server(uvicorn.Config(create_simulator(simulator_config), host=host, port=simulator_port)),
        uvicorn.Server(server_config(create_app(settings, [fintecture, powens]), host=host, port=port)),
    ]
    database_label = f"embedded PostgreSQL in {data_dir / 'pg'}" if pg_server else "DATABASE_URL"
    print(
        f"\n  Demo shop:          {service_url}/\n"
        f"  API docs:           {service_url}/docs\n"
        f"  Provider simulator: {simulator_url}  (control API under /_sim/)\n"
        f"  Operator API key:   {admin_key}\n"
        f"  Database:           {database_label}\n"
        "  Stop with Ctrl-C.\n",
        flush=True,
    )

    async def serve_all() -> None:
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:  # one stopped (Ctrl-C or a start-up error): stop the other too
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    # `docker stop` and service managers send SIGTERM: exit through Python (not the default
    # handler), so the embedded PostgreSQL is stopped on the way out, as with Ctrl-C.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        asyncio.run(serve_all())
    finally:
        del pg_server  # the embedded server stops when the process exits
