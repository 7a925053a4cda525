"""The service as a real child process (`checkout serve`, see `ServiceProcess`) with the provider
simulator in the test's event loop, for tests that kill the service, stop its database, or read
the log a deployment would write.

Fintecture is always enabled; `powens=True` enables Powens Pay too. Keys and secrets are made per
stack. The service's settings are environment variables, as in production.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import create_engine
from app.models import Order, OrderTransition, PaymentSession, ProviderEvent
from app.orders.states import OrderStatus
from app.providers.fintecture.signing import generate_key_pair_pem
from simulator.app import create_app as create_simulator
from simulator.config import AppConfig, PowensAppConfig, SimulatorConfig
from tests.conftest import ADMIN_KEY
from tests.support.servers import reserve_socket, serve, url_of
from tests.support.service_process import ServiceProcess

APP_ID = "shop-process"
STOREFRONT = "http://shop.test/checkout/result"
SKU = "SKU-LAMP"
CUSTOMER = {"name": "Camille Martin", "email": "camille@example.com"}
POWENS_CLIENT_ID = "48213957"
POWENS_DOMAIN = "shop-process-sandbox"


@dataclass
class ProcessStack:
    service: ServiceProcess
    simulator: Any  # the simulator's FastAPI app, in this process
    simulator_url: str
    http: httpx.AsyncClient
    sessionmaker: async_sessionmaker[AsyncSession]  # the service's database, for the test's checks
    secrets: dict[str, str] = field(default_factory=dict)  # every secret the service was given
    admin: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {ADMIN_KEY}"})

    @property
    def url(self) -> str:
        return self.service.url

    # -- storefront and operator -----------------------------------------------------------------
    async def put_product(self, unit_amount: int = 4990) -> None:
        response = await self.http.put(
            f"{self.url}/products/{SKU}",
            headers=self.admin,
            json={"name": "Desk lamp", "description": "", "unit_amount": unit_amount, "currency": "EUR"},
        )
        assert response.status_code in (200, 201), response.text

    async def post_order(self) -> httpx.Response:
        return await self.http.post(
            f"{self.url}/orders",
            json={"currency": "EUR", "items": [{"sku": SKU, "quantity": 1}], "customer": CUSTOMER},
        )

    async def open_session(self, order: dict[str, Any], **body: Any) -> httpx.Response:
        return await self.http.post(
            f"{self.url}/orders/{order['id']}/payment-session",
            headers={"Authorization": f"Bearer {order['access_token']}"},
            json=body,
        )

    async def paying_order(self, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """An order and its open payment session, while everything is up."""
        placed = await self.post_order()
        assert placed.status_code == 201, placed.text
        order = placed.json()
        opened = await self.open_session(order, **body)
        assert opened.status_code == 201, opened.text
        return order, opened.json()

    # -- payer and provider ----------------------------------------------------------------------
    async def complete(self, provider_session_id: str, outcome: str) -> str:
        """The payer's choice on Fintecture's hosted page; where their browser is sent next."""
        response = await self.http.post(
            f"{self.simulator_url}/_sim/sessions/{provider_session_id}/complete", json={"outcome": outcome}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["redirect_url"])

    async def deliveries(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.simulator_url}/_sim/webhooks")
        assert response.status_code == 200, response.text
        return response.json()["deliveries"]  # type: ignore[no-any-return]

    # -- the database, as the test sees it ---------------------------------------------------------
    async def table_counts(self) -> dict[str, int]:
        async with self.sessionmaker() as db:
            return {
                model.__tablename__: int(await db.scalar(select(func.count()).select_from(model)) or 0)
                for model in (Order, PaymentSession, ProviderEvent, OrderTransition)
            }

    async def order_statuses(self) -> dict[str, str]:
        async with self.sessionmaker() as db:
            rows = await db.execute(select(Order.id, Order.status))
            return {str(order_id): status.value for order_id, status in rows}

    async def transitions_to(self, status: OrderStatus) -> dict[str, int]:
        """Order id -> how many transitions into `status` it has."""
        async with self.sessionmaker() as db:
            rows = await db.execute(
                select(OrderTransition.order_id, func.count())
                .where(OrderTransition.to_status == status)
                .group_by(OrderTransition.order_id)
            )
            return {str(order_id): int(count) for order_id, count in rows}

    async def stored_delivery_ids(self) -> set[str]:
        async with self.sessionmaker() as db:
            return set(await db.scalars(select(ProviderEvent.delivery_id)))

    async def unprocessed_events(self) -> int:
        async with self.sessionmaker() as db:
            query = (
                select(func.count()).select_from(ProviderEvent).where(ProviderEvent.processed_at.is_(None))
            )
            return int(await db.scalar(query) or 0)


@asynccontextmanager
async def process_stack(
    database_url: str, *, powens: bool = False, webhook_retry_base_delay: float = 0.1, **settings: str
) -> AsyncIterator[ProcessStack]:
    """Start the simulator here and the service in a child process on `database_url`; `settings`
    are extra environment variables for the service (INBOX_POLL_SECONDS=..., ...)."""
    private_pem, public_pem = generate_key_pair_pem()
    app_secret = secrets.token_urlsafe(24)
    powens_secret = secrets.token_urlsafe(24)
    powens_webhook_secret = secrets.token_urlsafe(32)
    service = ServiceProcess({})
    sim_sock = reserve_socket()
    sim_url = url_of(sim_sock)
    simulator = create_simulator(
        SimulatorConfig(
            public_url=sim_url,
            webhook_retry_base_delay=webhook_retry_base_delay,
            pending_settle_seconds=3600,
            applications=[
                AppConfig(
                    app_id=APP_ID,
                    app_secret=app_secret,
                    public_key_pem=public_pem.decode(),
                    redirect_uris=[f"{service.url}/callback"],
                    webhook_url=f"{service.url}/webhook",
                    mode="lenient",
                )
            ],
            powens_applications=[
                PowensAppConfig(
                    client_id=POWENS_CLIENT_ID,
                    client_secret=powens_secret,
                    domain=POWENS_DOMAIN,
                    name="Shop",
                    redirect_uris=[f"{service.url}/callback"],
                    webhook_url=f"{service.url}/webhooks/powens",
                    webhook_secret=powens_webhook_secret,
                )
            ]
            if powens
            else [],
        )
    )
    secret_settings = {
        "ADMIN_API_KEY": ADMIN_KEY,
        "FINTECTURE_APP_SECRET": app_secret,
        "FINTECTURE_PRIVATE_KEY": private_pem.decode(),
    }
    if powens:
        secret_settings |= {
            "POWENS_CLIENT_SECRET": powens_secret,
            "POWENS_WEBHOOK_SECRET": powens_webhook_secret,
        }
    service.env.update(
        {
            "DATABASE_URL": database_url,
            "STOREFRONT_URL": STOREFRONT,
            "FINTECTURE_APP_ID": APP_ID,
            "FINTECTURE_API_URL": sim_url,
            "WORKERS_ENABLED": "true",
            "PROVIDER_TIMEOUT_SECONDS": "5",
            "LOG_LEVEL": "INFO",
            # Many requests from one client address: per-client limits are not what is under test.
            "RATE_LIMIT_ENABLED": "false",
            **secret_settings,
        }
    )
    if powens:
        service.env.update(
            {
                "POWENS_CLIENT_ID": POWENS_CLIENT_ID,
                "POWENS_DOMAIN": POWENS_DOMAIN,
                "POWENS_API_URL": f"{sim_url}/powens/2.0",
                "POWENS_WEBVIEW_URL": f"{sim_url}/powens/webview",
                "POWENS_BENEFICIARY_IBAN": "FR7630006000011234567890189",
                "POWENS_BENEFICIARY_NAME": "Shop SAS",
            }
        )
    service.env.update(settings)
    # The service's own engine settings: the test's connections outlive a database restart too.
    engine = create_engine(database_url, pool_size=2)
    try:
        async with serve(simulator, sim_sock), httpx.AsyncClient(timeout=20) as http:
            try:
                await service.start()  # a start that times out leaves a process to stop
                yield ProcessStack(
                    service,
                    simulator,
                    sim_url,
                    http,
                    async_sessionmaker(engine, expire_on_commit=False),
                    secrets=secret_settings,
                )
            finally:
                service.stop()
    finally:
        await engine.dispose()
        shutil.rmtree(service.workdir, ignore_errors=True)
