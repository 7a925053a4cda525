"""End-to-end stack: the provider simulator and the checkout service as live HTTP servers on
127.0.0.1, the service on the test session's PostgreSQL database, keys generated per test session.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.main import create_app
from app.models import Order, OrderTransition, PaymentSession, ProviderEvent
from app.providers.fintecture.settings import FintectureSettings
from app.providers.fintecture.signing import generate_key_pair_pem
from simulator.app import create_app as create_simulator
from simulator.config import AppConfig, SimulatorConfig
from tests.conftest import ADMIN_KEY
from tests.support.servers import reserve_socket, serve, url_of

APP_ID = "shop-e2e"
STOREFRONT = "http://shop.test/checkout/result"


@pytest.fixture(scope="session")
def merchant_keys() -> tuple[str, str]:
    private_pem, public_pem = generate_key_pair_pem()
    return private_pem.decode(), public_pem.decode()


@dataclass
class Stack:
    service: FastAPI
    simulator: FastAPI
    service_url: str
    simulator_url: str
    http: httpx.AsyncClient
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    fintecture: FintectureSettings
    admin: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {ADMIN_KEY}"})

    # -- storefront side -------------------------------------------------------------------------
    async def create_order(self, quantity: int = 2, unit_amount: int = 13675) -> dict[str, Any]:
        put = await self.http.put(
            f"{self.service_url}/products/SKU-E2E",
            headers=self.admin,
            json={"name": "Desk lamp", "description": "", "unit_amount": unit_amount, "currency": "EUR"},
        )
        assert put.status_code in (200, 201), put.text
        response = await self.http.post(
            f"{self.service_url}/orders",
            json={
                "currency": "EUR",
                "items": [{"sku": "SKU-E2E", "quantity": quantity}],
                "customer": {"name": "Camille Martin", "email": "camille@example.com"},
            },
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def open_session(self, order: dict[str, Any], **body: Any) -> httpx.Response:
        return await self.http.post(
            f"{self.service_url}/orders/{order['id']}/payment-session",
            headers={"Authorization": f"Bearer {order['access_token']}"},
            json=body,
        )

    async def paying_order(self) -> tuple[dict[str, Any], dict[str, Any]]:
        order = await self.create_order()
        response = await self.open_session(order)
        assert response.status_code == 201, response.text
        return order, response.json()

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.service_url}/orders/{order_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def order_status(self, order_id: str) -> str:
        return str((await self.order(order_id))["status"])

    # -- payer and provider side -----------------------------------------------------------------
    async def complete(self, provider_session_id: str, outcome: str) -> str:
        """What the payer does on the hosted page; returns where their browser is sent."""
        response = await self.http.post(
            f"{self.simulator_url}/_sim/sessions/{provider_session_id}/complete", json={"outcome": outcome}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["redirect_url"])

    async def follow_callback(self, redirect_url: str) -> httpx.Response:
        return await self.http.get(redirect_url, follow_redirects=False)

    async def drive(self, provider_session_id: str, status: str, transfer_state: str | None = None) -> None:
        body: dict[str, Any] = {"status": status}
        if transfer_state is not None:
            body["transfer_state"] = transfer_state
        response = await self.http.post(
            f"{self.simulator_url}/_sim/sessions/{provider_session_id}/status", json=body
        )
        assert response.status_code == 200, response.text

    async def faults(self, **knobs: Any) -> None:
        response = await self.http.post(f"{self.simulator_url}/_sim/faults", json=knobs)
        assert response.status_code == 200, response.text

    async def flush_webhooks(self, include_scheduled: bool = False) -> None:
        response = await self.http.post(
            f"{self.simulator_url}/_sim/webhooks/flush", json={"include_scheduled": include_scheduled}
        )
        assert response.status_code == 200, response.text

    async def deliveries(self, provider_session_id: str | None = None) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.simulator_url}/_sim/webhooks")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["deliveries"]
        return [d for d in items if provider_session_id in (None, d["session_id"])]

    async def api_requests(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.simulator_url}/_sim/requests")
        assert response.status_code == 200, response.text
        return response.json()["requests"]  # type: ignore[no-any-return]

    # -- the service's own machinery -------------------------------------------------------------
    async def settle(self, timeout: float = 10.0) -> None:
        """Let webhook deliveries land and every inbox row that is due be processed (by us or by
        the service's own worker, which may hold a row while we look)."""
        await self.flush_webhooks()
        deadline = time.monotonic() + timeout
        while True:
            await self.service.state.workers.drain_inbox()
            due = await self.count(
                ProviderEvent,
                ProviderEvent.processed_at.is_(None),
                ProviderEvent.next_attempt_at <= func.now(),
            )
            if due == 0:
                return
            assert time.monotonic() < deadline, f"{due} inbox rows still due after {timeout}s"
            await asyncio.sleep(0.02)

    async def sweep(self) -> None:
        await self.service.state.workers.sweep()

    async def wait_for_status(self, order_id: str, wanted: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        status = await self.order_status(order_id)
        while status != wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            status = await self.order_status(order_id)
        return status

    async def count(self, model: Any, *where: Any) -> int:
        async with self.sessionmaker() as db:
            return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def transitions(self, order_id: str) -> list[tuple[str | None, str, str]]:
        async with self.sessionmaker() as db:
            rows = await db.execute(
                select(OrderTransition.from_status, OrderTransition.to_status, OrderTransition.source)
                .where(OrderTransition.order_id == uuid.UUID(order_id))
                .order_by(OrderTransition.id)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    async def table_counts(self) -> dict[str, int]:
        return {
            "orders": await self.count(Order),
            "payment_sessions": await self.count(PaymentSession),
            "provider_events": await self.count(ProviderEvent),
            "order_transitions": await self.count(OrderTransition),
        }


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def stack_factory(
    database_url: str,
    clean_database: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    merchant_keys: tuple[str, str],
) -> AsyncIterator[Callable[..., Any]]:
    """Builds a running stack; options: mode (strict|lenient), simulator and Fintecture settings
    overrides, core settings overrides."""
    from contextlib import AsyncExitStack

    exits = AsyncExitStack()
    private_pem, public_pem = merchant_keys

    async def build(
        *,
        mode: str = "lenient",
        simulator_overrides: dict[str, Any] | None = None,
        fintecture_overrides: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Stack:
        sim_sock, svc_sock = reserve_socket(), reserve_socket()
        sim_url, svc_url = url_of(sim_sock), url_of(svc_sock)
        app_secret = secrets.token_urlsafe(24)
        sim_config = SimulatorConfig(
            public_url=sim_url,
            webhook_retry_base_delay=0.05,
            pending_settle_seconds=3600,
            applications=[
                AppConfig(
                    app_id=APP_ID,
                    app_secret=app_secret,
                    public_key_pem=public_pem,
                    redirect_uris=[f"{svc_url}/callback"],
                    webhook_url=f"{svc_url}/webhook",
                    mode=mode,  # type: ignore[arg-type]
                )
            ],
            **(simulator_overrides or {}),
        )
        fintecture = FintectureSettings(
            _env_file=None,  # type: ignore[call-arg]
            app_id=APP_ID,
            app_secret=app_secret,
            private_key=private_pem,
            api_url=sim_url,
            **(fintecture_overrides or {}),
        )
        values: dict[str, Any] = {
            "database_url": database_url,
            "admin_api_key": ADMIN_KEY,
            "public_url": svc_url,
            "storefront_url": STOREFRONT,
            "workers_enabled": True,
            "inbox_poll_seconds": 0.05,
            "sweeper_interval_seconds": 3600,
            "sweeper_stale_after_seconds": 0,
            "provider_timeout_seconds": 5,
        }
        values.update(overrides)
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        simulator = create_simulator(sim_config)
        service = create_app(settings, [fintecture])
        await exits.enter_async_context(serve(simulator, sim_sock))
        await exits.enter_async_context(serve(service, svc_sock))
        http = await exits.enter_async_context(httpx.AsyncClient(timeout=20))
        return Stack(service, simulator, svc_url, sim_url, http, sessionmaker, settings, fintecture)

    yield build
    await exits.aclose()


@pytest.fixture
async def stack(stack_factory: StackFactory) -> Stack:
    return await stack_factory()


def form_action_and_fields(html: str) -> tuple[str, dict[str, str]]:
    """The Connect page's form: its action and the default of each radio/hidden field."""
    action = re.search(r'<form[^>]*action="([^"]*)"', html)
    fields: dict[str, str] = {}
    for match in re.finditer(r"<input([^>]*)>", html):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if attrs.get("type") == "radio" and "checked" not in match.group(1):
            continue
        if "name" in attrs:
            fields[attrs["name"]] = attrs.get("value", "")
    return (action.group(1) if action else ""), fields
