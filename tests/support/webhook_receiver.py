"""A merchant's webhook endpoint for the tests: a live Starlette app verifying every delivery with the
`standardwebhooks` library, as the README tells receivers to."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import reserve_socket, serve


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any] | None  # None: the signature did not verify
    answered: int
    at: float  # time.monotonic()

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event_type(self) -> str:
        return str(json.loads(self.body)["type"])


@dataclass
class Receiver:
    secret: str = field(default_factory=new_secret)
    url: str = ""
    received: list[Received] = field(default_factory=list)
    # The status to answer a verified delivery with (a forged one always gets 400).
    answer: Callable[[dict[str, Any]], int] = lambda _payload: 200

    def app(self) -> Starlette:
        verifier = Webhook(self.secret)

        async def hooks(request: Request) -> Response:
            body = await request.body()
            try:
                payload = verifier.verify(body, dict(request.headers))
            except WebhookVerificationError:
                payload = None
            status = 400 if payload is None else self.answer(payload)
            self.received.append(Received(dict(request.headers), body, payload, status, time.monotonic()))
            return Response(status_code=status)

        return Starlette(routes=[Route("/hooks", hooks, methods=["POST"])])

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The payloads answered 2xx, in arrival order."""
        return [r.payload for r in self.received if r.payload is not None and 200 <= r.answered < 300]

    def accepted_of(self, order_id: str) -> list[str]:
        return [p["type"] for p in self.accepted if p["data"].get("order_id") == order_id]


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with serve(receiver.app(), reserve_socket()) as base_url:
        receiver.url = f"{base_url}/hooks"
        yield receiver
