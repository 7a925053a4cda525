"""`POST /orders` without an `Idempotency-Key`, answered just inside CORS, before FastAPI's routing.

Placing an order is the storefront's busiest request. FastAPI's handling around the route (matching
it among every route, the request object, solving its dependencies, its exception layers) cost
about a third of the request's CPU inside the process, more than the order's own statement. This
layer answers the plain case itself, through the same `service.create_order`, and passes every other
request on to the route in app/orders/routes.py, which stays the OpenAPI description:

- a request with an `Idempotency-Key` (its replay and conflict rules live in the route);
- a `Content-Type` other than exactly `application/json`;
- a body that is not JSON or not a valid order: FastAPI then answers it (400 `malformed_json`,
  422 `validation_error`) as it always has, from the same bytes.

The order of checks is FastAPI's: a body that is not JSON is refused before the rate limit counts
the request; a valid one is counted, then priced. A request is counted once whichever way it goes.
Answers keep the edge's request id, security headers, access line, metrics and body limit, and
CORS's headers.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.edge import api_route, json_body_as, plain_json_headers, read_body, replaying, route_path, send_json
from app.errors import ApiError, refusal_response
from app.orders import service
from app.orders.schemas import OrderCreate
from app.ratelimit import Limit, enforce_limit

PATH = "/orders"


def _plain_json_order(scope: Scope) -> bool:
    """A POST to /orders with a JSON body and no Idempotency-Key."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    return route_path(scope) == PATH and plain_json_headers(scope) is not None


class OrderCreateRoute:
    """Answers a plain `POST /orders`; passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None  # found on first use: routes are added after middlewares

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _plain_json_order(scope):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client hung up before sending the order: nothing to do
        order = json_body_as(OrderCreate, body)
        if order is None:
            await self.app(scope, replaying(body, receive), send)
            return
        await self._create(scope, receive, send, order)

    async def _create(self, scope: Scope, receive: Receive, send: Send, order: OrderCreate) -> None:
        app = scope["app"]
        if self._route is None:
            self._route = api_route(app, PATH, "POST")
        scope["route"] = self._route
        state = app.state
        try:
            if state.rate_limiter is not None:
                await enforce_limit(Request(scope), Limit.ORDER_CREATE)
            created = await service.create_order(
                state.engine, order, max_line_quantity=state.settings.max_line_quantity
            )
        except (HTTPException, ApiError) as exc:
            await refusal_response(exc)(scope, receive, send)
            return
        await send_json(send, 201, created.model_dump_json().encode())
