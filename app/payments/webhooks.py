"""Receiving a provider's webhook: verify, store, wake the inbox worker, acknowledge.

`receive` is the whole of it, for both ways a delivery comes in:

- `WebhookRoute`, an ASGI layer just inside the edge (app/edge.py), answers `POST /webhook` and
  `POST /webhooks/{provider}` for an enabled provider itself. Webhooks are the service's busiest
  requests, and FastAPI's handling around the route (matching it among every route, the request
  object, dependency solving, its exception layers) cost about 100 µs of CPU a delivery, a quarter
  of what is not the signature's RSA, measured inside the process. The edge still gives these
  answers their request id, security headers, access line, metrics and body limit. (They get no
  CORS headers: a provider's servers send them, never a browser.)
- The routes in app/payments/routes.py declare the same endpoints to FastAPI: they are the OpenAPI
  description, and they answer what the layer leaves to them (an unknown provider's 404, a
  malformed name's 422, another method's 405).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app import metrics
from app.edge import api_route, read_body, route_path, send_json
from app.errors import ApiError, refusal_response
from app.payments import inbox, intake, service
from app.payments.schemas import WebhookAck
from app.providers.base import Provider, WebhookMalformed, WebhookRejected, WebhookRequest
from app.providers.registry import LEGACY_WEBHOOK_PROVIDER

# The two answers a stored delivery gets, serialised once.
ACK_STORED = WebhookAck(received=True, duplicate=False).model_dump_json().encode()
ACK_DUPLICATE = WebhookAck(received=True, duplicate=True).model_dump_json().encode()

LEGACY_PATH = "/webhook"
PATH_PREFIX = "/webhooks/"


async def receive(state: Any, provider: Provider, request: WebhookRequest) -> bytes:
    """Verify `request`, store it in one autocommitted INSERT, wake the inbox worker; the
    acknowledgement's body. No ORM session: the insert is the whole unit of work, and the worker
    does the rest. Raises ApiError (400, 401) for a delivery that is refused, with nothing written."""
    try:
        hint = provider.verify_webhook(request, service.utcnow())
        intake.check_storable(hint)
    except WebhookMalformed as exc:
        metrics.webhook_received(provider.name, "rejected", "invalid_webhook")
        raise ApiError(400, "invalid_webhook", f"webhook refused: {exc.reason}") from exc
    except WebhookRejected as exc:
        metrics.webhook_received(provider.name, "rejected", "invalid_signature")
        raise ApiError(401, "invalid_signature", f"webhook rejected: {exc.reason}") from exc
    stored = await inbox.store(state.engine, provider.name, hint, request.raw_body)
    metrics.webhook_received(provider.name, "accepted" if stored else "duplicate")
    if stored:
        state.workers.notify()
    return ACK_STORED if stored else ACK_DUPLICATE


class WebhookRoute:
    """Answers a `POST` to an enabled provider's webhook path; passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The FastAPI routes by template, found on first use (routes are added after middlewares).
        self._routes: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive_: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = route_path(scope)
            if path == LEGACY_PATH:
                name = LEGACY_WEBHOOK_PROVIDER
            elif path.startswith(PATH_PREFIX):
                name = path[len(PATH_PREFIX) :]
            else:
                name = None
            if name is not None:
                app = scope["app"]
                provider = app.state.providers.get(name)
                if provider is not None:
                    await self._answer(app, provider, path, scope, receive_, send)
                    return
        await self.app(scope, receive_, send)

    async def _answer(
        self, app: Any, provider: Provider, path: str, scope: Scope, receive_: Receive, send: Send
    ) -> None:
        scope["route"] = self._route_for(app, path)
        raw_body = await read_body(receive_)
        if raw_body is None:
            return  # the provider hung up before sending it all: nothing to verify or store
        request = WebhookRequest(
            method="POST", path=scope["path"], headers=Headers(scope=scope), raw_body=raw_body
        )
        try:
            body = await receive(app.state, provider, request)
        except ApiError as exc:
            await refusal_response(exc)(scope, receive_, send)
            return
        await send_json(send, 200, body)

    def _route_for(self, app: Any, path: str) -> Any:
        template = LEGACY_PATH if path == LEGACY_PATH else PATH_PREFIX + "{provider}"
        if template not in self._routes:
            self._routes[template] = api_route(app, template, "POST")
        return self._routes[template]
