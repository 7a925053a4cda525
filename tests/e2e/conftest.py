"""End-to-end stack: the provider simulator and the checkout service as live HTTP servers on
127.0.0.1, the service on the test session's PostgreSQL database, keys generated per test session.

Fintecture is always enabled; Powens Pay joins it with `stack_factory(powens=True)` (or the
`powens_stack` fixture): a Powens client registered at the simulator with a webhook secret generated
per stack, its webhooks going to `<service>/webhooks/powens` and its payers back to
`<service>/callback`.
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
from app.providers.powens.settings import PowensSettings
from simulator.app import create_app as create_simulator
from simulator.config import AppConfig, PowensAppConfig, PowensPhaseSeconds, SimulatorConfig
from tests.conftest import ADMIN_KEY
from tests.support.servers import reserve_socket, serve, url_of

APP_ID = "shop-e2e"
STOREFRONT = "http://shop.test/checkout/result"

POWENS_CLIENT_ID = "57319864"
POWENS_DOMAIN = "shop-e2e-sandbox"
POWENS_IBAN = "FR7630006000011234567890189"
POWENS_BENEFICIARY = "Shop E2E SAS"
POWENS_WEBHOOK_PATH = "/webhooks/powens"
# One phase of the Powens test connector's label scenario on the simulator's clock: short enough
# that advancing the clock through a few phases keeps webhook dates within the service's window.
POWENS_PHASE_SECONDS = 60.0


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
    powens: PowensSettings | None = None

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

    # -- Powens Pay (stacks built with powens=True) ----------------------------------------------
    @property
    def powens_webhook_secret(self) -> str:
        assert self.powens is not None, "this stack was built without Powens"
        return self.powens.webhook_secret.get_secret_value()

    async def powens_paying_order(self, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """An order and its Powens payment session, opened through the service."""
        order = await self.create_order()
        response = await self.open_session(order, provider="powens", **body)
        assert response.status_code == 201, response.text
        session = response.json()
        assert session["provider"] == "powens", session
        return order, session

    async def powens_paying_orders(
        self, count: int, concurrency: int = 8
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """`count` orders for the catalog's desk lamp, each with its Powens payment session, opened
        `concurrency` at a time (the product is put in the catalog once)."""
        first = await self.powens_paying_order()
        gate = asyncio.Semaphore(concurrency)

        async def one() -> tuple[dict[str, Any], dict[str, Any]]:
            async with gate:
                placed = await self.http.post(
                    f"{self.service_url}/orders",
                    json={
                        "currency": "EUR",
                        "items": [{"sku": "SKU-E2E", "quantity": 2}],
                        "customer": {"name": "Camille Martin", "email": "camille@example.com"},
                    },
                )
                assert placed.status_code == 201, placed.text
                order = placed.json()
                opened = await self.open_session(order, provider="powens")
                assert opened.status_code == 201, opened.text
                return order, opened.json()

        return [first, *await asyncio.gather(*(one() for _ in range(count - 1)))]

    async def pay_in_webview(self, connect_url: str, outcome: str = "validate", scenario: str = "") -> str:
        """What the payer's browser does in the Powens webview: open the page, submit its form
        (`validate` or `cancel`, with a test-connector scenario such as `done`, or the label's own
        when empty); returns where the browser is sent (the 303's Location)."""
        page = await self.http.get(connect_url)
        assert page.status_code == 200, page.text
        submitted = await self.http.post(connect_url, data={"outcome": outcome, "scenario": scenario})
        assert submitted.status_code == 303, submitted.text
        return str(submitted.headers["location"])

    async def powens_complete(self, payment_id: str, outcome: str, scenario: str | None = None) -> str | None:
        """The webview's outcome without a browser (`validate`, `cancel`, `abandon`, ...); returns
        where the payer's browser is sent (None for `abandon`)."""
        body: dict[str, Any] = {"outcome": outcome}
        if scenario is not None:
            body["scenario"] = scenario
        response = await self.http.post(
            f"{self.simulator_url}/_sim/powens/payments/{payment_id}/complete", json=body
        )
        assert response.status_code == 200, response.text
        url = response.json()["redirect_url"]
        return None if url is None else str(url)

    async def powens_drive(self, payment_id: str, state: str, **change: Any) -> dict[str, Any]:
        """Force a Powens payment into any state (the simulator's knob; one webhook if it changed)."""
        response = await self.http.post(
            f"{self.simulator_url}/_sim/powens/payments/{payment_id}/state", json={"state": state, **change}
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def powens_payment(self, payment_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.simulator_url}/_sim/powens/payments/{payment_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def advance_clock(self, seconds: float) -> None:
        response = await self.http.post(f"{self.simulator_url}/_sim/clock/advance", json={"seconds": seconds})
        assert response.status_code == 200, response.text


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
    overrides, `powens=True` to enable Powens Pay too (with `powens_overrides` for its settings and
    `powens_app_overrides` for its client at the simulator, e.g. `webhook_gzip`), core settings
    overrides."""
    from contextlib import AsyncExitStack

    exits = AsyncExitStack()
    private_pem, public_pem = merchant_keys

    async def build(
        *,
        mode: str = "lenient",
        simulator_overrides: dict[str, Any] | None = None,
        fintecture_overrides: dict[str, Any] | None = None,
        powens: bool = False,
        powens_overrides: dict[str, Any] | None = None,
        powens_app_overrides: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Stack:
        sim_sock, svc_sock = reserve_socket(), reserve_socket()
        sim_url, svc_url = url_of(sim_sock), url_of(svc_sock)
        app_secret = secrets.token_urlsafe(24)
        powens_secret = secrets.token_urlsafe(24)
        powens_webhook_secret = secrets.token_urlsafe(32)
        simulator_values: dict[str, Any] = {
            "powens_phase_seconds": PowensPhaseSeconds(first_open_day=POWENS_PHASE_SECONDS),
            **(simulator_overrides or {}),
        }
        sim_config = SimulatorConfig(
            public_url=sim_url,
            webhook_retry_base_delay=0.05,
            pending_settle_seconds=3600,
            applications=[
                AppConfig(
                    app_id=APP_ID,
                    app_secret=app_secret,
                    public_key_pem=public_pem,
                    redirect_uris=[f"{svc_url}/callback", f"{svc_url}/payouts/callback"],
                    webhook_url=f"{svc_url}/webhook",
                    mode=mode,  # type: ignore[arg-type]
                )
            ],
            powens_applications=[
                PowensAppConfig(
                    client_id=POWENS_CLIENT_ID,
                    client_secret=powens_secret,
                    domain=POWENS_DOMAIN,
                    name="Shop E2E",
                    redirect_uris=[f"{svc_url}/callback"],
                    webhook_url=f"{svc_url}{POWENS_WEBHOOK_PATH}",
                    webhook_secret=powens_webhook_secret,
                    **(powens_app_overrides or {}),
                )
            ],
            **simulator_values,
        )
        fintecture = FintectureSettings(
            _env_file=None,  # type: ignore[call-arg]
            app_id=APP_ID,
            app_secret=app_secret,
            private_key=private_pem,
            api_url=sim_url,
            **(fintecture_overrides or {}),
        )
        # Without powens=True, Powens stays disabled whatever a developer's POWENS_* say.
        powens_settings = PowensSettings(
            _env_file=None,  # type: ignore[call-arg]
            **(
                {
                    "client_id": POWENS_CLIENT_ID,
                    "client_secret": powens_secret,
                    "domain": POWENS_DOMAIN,
                    "api_url": f"{sim_url}/powens/2.0",
                    "webview_url": f"{sim_url}/powens/webview",
                    "webhook_secret": powens_webhook_secret,
                    "beneficiary_iban": POWENS_IBAN,
                    "beneficiary_name": POWENS_BENEFICIARY,
                    **(powens_overrides or {}),
                }
                if powens
                else {"client_id": ""}
            ),
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
            "rate_limit_enabled": False,
            # Opened on demand: a stack per test would open and close twenty connections for the
            # few it uses. (The stacks of real processes, tests/support/process_stack.py, open theirs
            # at start, as deployed; tests/integration/test_database_pool.py tests the prefill.)
            "database_pool_prefill": False,
        }
        values.update(overrides)
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        simulator = create_simulator(sim_config)
        service = create_app(settings, [fintecture, powens_settings])
        await exits.enter_async_context(serve(simulator, sim_sock))
        await exits.enter_async_context(serve(service, svc_sock))
        http = await exits.enter_async_context(httpx.AsyncClient(timeout=20))
        return Stack(
            service,
            simulator,
            svc_url,
            sim_url,
            http,
            sessionmaker,
            settings,
            fintecture,
            powens=powens_settings if powens else None,
        )

    yield build
    await exits.aclose()


@pytest.fixture
async def stack(stack_factory: StackFactory) -> Stack:
    return await stack_factory()


@pytest.fixture
async def powens_stack(stack_factory: StackFactory) -> Stack:
    """Fintecture and Powens Pay, both enabled (Fintecture the default provider)."""
    return await stack_factory(powens=True)


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
