"""`POST /orders/{order_id}/payment-session` without an `Idempotency-Key`, answered just inside CORS,
before FastAPI's routing.

Opening a session is the checkout's costliest request after the provider's own work. FastAPI's
handling around the route (matching it among every route, the request object, solving eight
dependencies, its exception layers) was about an eighth of the service's CPU per session. This
layer answers the plain case itself, through the same `service.open_session`, and passes every
other request on to the route in app/payments/routes.py, which stays the OpenAPI description:

- a request with an `Idempotency-Key` (its replay rules live in the route);
- a `Content-Type` other than exactly `application/json`, or an empty body;
- a body that is not JSON or not valid options, or that names a provider not enabled here (its 422
  is only for the order's bearer): the route answers it as it always has, from the same bytes.

The order of checks is the route's: the rate limit counts a request with valid options, then the
bearer's claim on the order is checked by the reservation itself. A request is counted once
whichever way it goes. Answers keep the edge's request id, security headers, access line, metrics
and body limit, and CORS's headers.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Receive, Scope, Send

from app.edge import api_route, json_body_as, plain_json_headers, read_body, replaying, route_path, send_json
from app.errors import ApiError, refusal_response
from app.orders.service import order_access
from app.payments import service
from app.payments.schemas import PaymentSessionRequest, PaymentSessionResponse
from app.ratelimit import Limit, enforce_limit

TEMPLATE = "/orders/{order_id}/payment-session"
_PREFIX = "/orders/"
_SUFFIX = "/payment-session"


def _plain_request(scope: Scope) -> tuple[str, str | None] | None:
    """The order id and the bearer token of a POST to an order's payment-session path with a JSON
    body and no Idempotency-Key; None for any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path = route_path(scope)
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    order_id = path[len(_PREFIX) : -len(_SUFFIX)]
    if not order_id or "/" in order_id:
        return None  # not the route's one path segment
    headers = plain_json_headers(scope, b"authorization")  # the first one counts, as for the route
    if headers is None:
        return None
    authorization = headers.get(b"authorization")
    return order_id, _bearer(None if authorization is None else authorization.decode("latin-1"))


def _bearer(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, read as the route's security scheme reads it."""
    scheme, token = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and token) or scheme.lower() != "bearer":
        return None
    return token


class PaymentSessionRoute:
    """Answers a plain `POST /orders/{order_id}/payment-session`; passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None  # found on first use: routes are added after middlewares

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plain = _plain_request(scope)
        if plain is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client hung up before sending its options: nothing to do
        options = _plain_options(body, scope["app"].state.providers)
        if options is None:
            await self.app(scope, replaying(body, receive), send)
            return
        order_id, bearer = plain
        await self._open(scope, receive, send, order_id, bearer, options)

    async def _open(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        order_id: str,
        bearer: str | None,
        options: PaymentSessionRequest,
    ) -> None:
        app = scope["app"]
        if self._route is None:
            self._route = api_route(app, TEMPLATE, "POST")
        scope["route"] = self._route
        state = app.state
        settings = state.settings
        client = scope.get("client")
        try:
            if state.rate_limiter is not None:
                await enforce_limit(Request(scope), Limit.ORDER_ACCESS)
            session, created = await service.open_requested_session(
                state.engine,
                state.sessionmaker,
                settings,
                state.providers,
                order_access(order_id, bearer, settings),
                options,
                payer_ip=client[0] if client else None,
                outbox_recorded=state.dispatcher.wake,
            )
        except (HTTPException, ApiError) as exc:
            await refusal_response(exc)(scope, receive, send)
            return
        answer = PaymentSessionResponse.model_validate(session).model_dump_json().encode()
        await send_json(send, 201 if created else 200, answer)


def _plain_options(body: bytes, providers: Any) -> PaymentSessionRequest | None:
    """The options in `body`, read as the route reads a JSON body; None when the route should
    answer: not JSON, not valid options, or a provider that is not enabled here."""
    options = json_body_as(PaymentSessionRequest, body) if body else None
    if options is None:
        return None
    if options.provider is not None and options.provider not in providers:
        return None
    return options
