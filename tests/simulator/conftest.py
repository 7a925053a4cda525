"""A simulator per test, on a frozen clock, with a real webhook receiver (a tiny ASGI app).

API calls go through httpx.ASGITransport into the simulator app; webhooks go from the simulator
through another ASGITransport into `Receiver`, which records what arrives and answers with the
status codes a test asks for.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from simulator.app import create_app
from simulator.clock import Clock, FrozenClock
from simulator.config import AppConfig, PowensAppConfig, SimulatorConfig
from tests.simulator.contract import rfc2822, sign_request

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
PUBLIC_URL = "http://sim.test"
WEBHOOK_URL = "http://merchant.test/webhook"
REDIRECT_URI = "https://shop.example/checkout/return"
ORIGIN_URI = "https://shop.example/cart"

POWENS_API = "/powens/2.0"
POWENS_REDIRECT = "https://shop.example/powens/return"
POWENS_WEBHOOK_URL = "http://merchant.test/webhooks/powens"
POWENS_IBAN = "FR7630006000011234567890189"


def new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass(frozen=True)
class Merchant:
    app_id: str
    app_secret: str
    private_key: RSAPrivateKey
    mode: str

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.app_id}:{self.app_secret}".encode()).decode()


@pytest.fixture(scope="session")
def keys() -> dict[str, RSAPrivateKey]:
    return {name: new_key() for name in ("lenient", "strict", "acquiring", "other")}


@pytest.fixture(scope="session")
def merchants(keys: dict[str, RSAPrivateKey]) -> dict[str, Merchant]:
    return {
        "lenient": Merchant(
            "2dfdcf57-5b2f-4309-846f-913d0b2802cf", "lenient-secret", keys["lenient"], "lenient"
        ),
        "strict": Merchant("8603fb08-d2ef-4e73-ba2f-5e4cd80efb65", "strict-secret", keys["strict"], "strict"),
        "acquiring": Merchant(
            "5c0b8e0e-7a0c-4a44-9a59-1d8a3e1b9f10", "acq-secret", keys["acquiring"], "lenient"
        ),
    }


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """The merchant's webhook endpoint. `statuses` are answered in turn, then 200; `crash` raises."""

    received: list[Received] = field(default_factory=list)
    statuses: list[int | str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.received.append(Received(scope["method"], scope["path"], headers, body))
        answer = self.statuses.pop(0) if self.statuses else 200
        if answer == "crash":
            raise RuntimeError("receiver crashed")
        await send({"type": "http.response.start", "status": answer, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def app_config(merchant: Merchant, **extra: Any) -> AppConfig:
    return AppConfig(
        app_id=merchant.app_id,
        app_secret=merchant.app_secret,
        public_key_pem=public_pem(merchant.private_key),
        redirect_uris=[REDIRECT_URI, "https://shop.example/cb"],
        webhook_url=WEBHOOK_URL,
        mode=merchant.mode,
        name=f"Shop {merchant.mode}",
        **extra,
    )


@dataclass(frozen=True)
class PowensClient:
    client_id: str
    client_secret: str
    domain: str
    webhook_secret: str


POWENS_CLIENTS = {
    "shop": PowensClient("10001", "powens-secret", "shop-sandbox", "whsec-shop-0123456789"),
    "gzip": PowensClient("10002", "gzip-secret", "gzip-sandbox", "whsec-gzip-0123456789"),
    "capped": PowensClient("10003", "capped-secret", "capped-sandbox", "whsec-capped-0123456789"),
}


def powens_config(client: PowensClient, **extra: Any) -> PowensAppConfig:
    return PowensAppConfig(
        client_id=client.client_id,
        client_secret=client.client_secret,
        domain=client.domain,
        name=f"Powens {client.domain}",
        redirect_uris=[POWENS_REDIRECT, "https://shop.example/powens/cancelled"],
        webhook_url=POWENS_WEBHOOK_URL,
        webhook_secret=client.webhook_secret,
        **extra,
    )


def powens_payment_body(
    *,
    label: str = "ORDER-1",
    amount: float | int | str = 50.90,
    execution_date_type: str = "first_open_day",
    state: str | None = "order-1",
    **extra: Any,
) -> dict[str, Any]:
    """A PaymentInitRequest as the seed guide writes it (one instruction)."""
    body: dict[str, Any] = {
        "client_redirect_uri": POWENS_REDIRECT,
        "instructions": [
            {
                "label": label,
                "amount": amount,
                "currency": "EUR",
                "execution_date_type": execution_date_type,
                "beneficiary": {"scheme_name": "iban", "identification": POWENS_IBAN, "label": "ACME Corp."},
            }
        ],
        **extra,
    }
    if state is not None:
        body["client_state"] = state
    return body


class PowensHarness:
    """Powens calls as the merchant's backend makes them, and the /_sim/powens knobs."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._tokens: dict[str, str] = {}

    @property
    def shop(self) -> PowensClient:
        return POWENS_CLIENTS["shop"]

    async def token(self, client: PowensClient | None = None, scope: Any = "payments:admin") -> str:
        client = client or self.shop
        key = f"{client.client_id}:{scope}"
        if key not in self._tokens:
            response = await self.client.post(
                f"{POWENS_API}/auth/token",
                json={
                    "grant_type": "client_credentials",
                    "client_id": client.client_id,
                    "client_secret": client.client_secret,
                    "scope": scope,
                },
            )
            assert response.status_code == 200, response.text
            self._tokens[key] = response.json()["token"]
        return self._tokens[key]

    async def api(
        self,
        method: str,
        path: str,
        *,
        client: PowensClient | None = None,
        token: str | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or await self.token(client)}"}
        return await self.client.request(
            method, f"{POWENS_API}{path}", json=json, params=params, headers=headers
        )

    async def create(
        self, client: PowensClient | None = None, expect: int = 200, **body: Any
    ) -> dict[str, Any]:
        response = await self.api("POST", "/payments", client=client, json=powens_payment_body(**body))
        assert response.status_code == expect, response.text
        created: dict[str, Any] = response.json()
        return created

    async def payment(self, payment_id: int, client: PowensClient | None = None) -> dict[str, Any]:
        response = await self.api("GET", f"/payments/{payment_id}", client=client)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def scoped_token(self, payment_id: int, client: PowensClient | None = None) -> dict[str, Any]:
        response = await self.api(
            "POST",
            f"/payments/{payment_id}/scopedtoken",
            client=client,
            json={"scope": ["payments:validate"]},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def control(self, method: str, path: str, json: Any = None, expect: int = 200) -> Any:
        response = await self.client.request(method, f"/_sim/powens{path}", json=json)
        assert response.status_code == expect, response.text
        return response.json()

    async def complete(self, payment_id: int, outcome: str = "validate", **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.control(
            "POST", f"/payments/{payment_id}/complete", {"outcome": outcome, **extra}
        )
        return result

    async def set_state(self, payment_id: int, **change: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.control("POST", f"/payments/{payment_id}/state", change)
        return result


class Harness:
    def __init__(
        self,
        client: httpx.AsyncClient,
        clock: Clock,
        receiver: Receiver,
        merchants: dict[str, Merchant],
        config: SimulatorConfig,
    ) -> None:
        self.client = client
        self.clock = clock
        self.receiver = receiver
        self.merchants = merchants
        self.config = config
        self._tokens: dict[str, str] = {}
        self.powens = PowensHarness(client)

    @property
    def lenient(self) -> Merchant:
        return self.merchants["lenient"]

    @property
    def strict(self) -> Merchant:
        return self.merchants["strict"]

    async def token(self, merchant: Merchant) -> str:
        if merchant.app_id not in self._tokens:
            response = await self.client.post(
                "/oauth/accesstoken",
                headers={"Authorization": merchant.basic, "Accept": "application/json"},
                data={"grant_type": "client_credentials", "app_id": merchant.app_id, "scope": "PIS"},
            )
            assert response.status_code == 200, response.text
            self._tokens[merchant.app_id] = response.json()["access_token"]
        return self._tokens[merchant.app_id]

    async def api(
        self,
        method: str,
        url: str,
        merchant: Merchant,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        sign: bool | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """A PIS call as the merchant's backend makes it; signed by default in strict mode."""
        all_headers = {"Authorization": f"Bearer {token or await self.token(merchant)}", **(headers or {})}
        if json is not None:
            all_headers.setdefault("Content-Type", "application/json")
        request = self.client.build_request(
            method, url, json=json, content=content, params=params, headers=all_headers
        )
        if sign if sign is not None else merchant.mode == "strict":
            sign_request(
                request,
                key_id=merchant.app_id,
                private_key=merchant.private_key,
                date=rfc2822(self.clock.now()),
            )
        return await self.client.send(request)

    async def connect(
        self,
        merchant: Merchant | None = None,
        *,
        amount: str = "273.00",
        state: str = "order-1",
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        merchant = merchant or self.lenient
        payload = body or {
            "meta": {"psu_name": "Julien Lefebre", "psu_email": "julien@example.com", "psu_ip": "192.0.2.10"},
            "data": {
                "type": "payments",
                "attributes": {"amount": amount, "currency": "EUR", "communication": "ORDER-1"},
            },
        }
        query = {"state": state, "redirect_uri": REDIRECT_URI, "origin_uri": ORIGIN_URI}
        query.update(params or {})
        response = await self.api(
            "POST", "/pis/v2/connect", merchant, json=payload, params=query, headers=headers
        )
        assert response.status_code == expect, response.text
        body_json: dict[str, Any] = response.json()
        return body_json

    async def payment(self, session_id: str, merchant: Merchant | None = None) -> dict[str, Any]:
        response = await self.api("GET", f"/pis/v2/payments/{session_id}", merchant or self.lenient)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def control(self, method: str, path: str, json: Any = None, expect: int = 200) -> Any:
        response = await self.client.request(method, f"/_sim{path}", json=json)
        assert response.status_code == expect, response.text
        return response.json()

    async def complete(self, session_id: str, outcome: str, **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.control(
            "POST", f"/sessions/{session_id}/complete", {"outcome": outcome, **extra}
        )
        return result

    async def set_status(self, session_id: str, **change: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.control("POST", f"/sessions/{session_id}/status", change)
        return result

    async def advance(self, seconds: float) -> None:
        await self.control("POST", "/clock/advance", {"seconds": seconds})

    async def flush(self, *, include_scheduled: bool = False, timeout: float = 5) -> dict[str, Any]:
        result: dict[str, Any] = await self.control(
            "POST", "/webhooks/flush", {"timeout": timeout, "include_scheduled": include_scheduled}
        )
        assert result["settled"], result
        return result

    async def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        response = await self.client.get("/_sim/webhooks", params=filters)
        deliveries: list[dict[str, Any]] = response.json()["deliveries"]
        return deliveries


def local_socket() -> tuple[socket.socket, str]:
    """A listening address on 127.0.0.1 with a free port, and its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


class LiveServer:
    """An ASGI app under uvicorn in a thread, on a socket bound beforehand; stopped on exit."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


SimFactory = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def make_sim(merchants: dict[str, Merchant]) -> SimFactory:
    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Harness]:
        receiver = Receiver()
        clock = overrides.pop("clock", None) or FrozenClock(START)
        config = SimulatorConfig(
            applications=[
                app_config(merchants["lenient"]),
                app_config(merchants["strict"]),
                app_config(merchants["acquiring"], acquiring_account=True),
            ],
            public_url=PUBLIC_URL,
            clock=clock,
            **{
                "powens_applications": [
                    powens_config(POWENS_CLIENTS["shop"]),
                    powens_config(POWENS_CLIENTS["gzip"], webhook_gzip=True),
                    powens_config(POWENS_CLIENTS["capped"], max_amount="10.00"),
                ],
                "webhook_retry_base_delay": 10.0,
                "webhook_transport": httpx.ASGITransport(app=receiver),
                **overrides,
            },
        )
        app = create_app(config)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
                yield Harness(client, clock, receiver, merchants, config)

    return factory


@pytest.fixture
async def sim(make_sim: SimFactory) -> AsyncIterator[Harness]:
    async with make_sim() as harness:
        yield harness
