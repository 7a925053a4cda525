"""Payment routes: open a session, the payer's return (/callback), the providers' webhooks, sync."""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from app.auth import OrderBearer, require_admin
from app.deps import DbSession, DispatcherDep, EngineDep, ProvidersDep, SessionMakerDep, SettingsDep
from app.errors import ApiError, NotFound
from app.idempotency import fingerprint_of, remember, replay
from app.openapi import error, return_parameters, webhook_openapi
from app.orders.service import authorize_order, get_order_for_bearer, order_access
from app.payments import refunds, service, webhooks
from app.payments.schemas import (
    CapabilitiesOut,
    PaymentSessionRequest,
    PaymentSessionResponse,
    ProviderList,
    ProviderOut,
    RefundCreate,
    RefundList,
    RefundOut,
    SyncResponse,
    WebhookAck,
)
from app.payments.states import ORDER_STATUS_FOR
from app.providers.base import ProviderError, WebhookRequest
from app.providers.registry import LEGACY_WEBHOOK_PROVIDER, default_provider, enabled_plugins
from app.ratelimit import Limit, rate_limited
from app.validation import Text, plain_query_parameters

router = APIRouter(tags=["payments"])


@router.get(
    "/providers",
    response_model=ProviderList,
    summary="The enabled payment providers",
    description="Public: lets a storefront offer the payer a choice. Pass `name` as `provider` "
    "when opening a payment session; the `default` one is used when none is named.",
)
async def list_providers(settings: SettingsDep, providers: ProvidersDep) -> ProviderList:
    default = default_provider(settings, providers)
    return ProviderList(
        items=[
            ProviderOut(
                name=plugin.name,
                display_name=plugin.display_name,
                default=plugin.name == default,
                capabilities=CapabilitiesOut.model_validate(plugin.capabilities),
            )
            for plugin in enabled_plugins(providers)
        ]
    )


@router.post(
    "/orders/{order_id}/payment-session",
    response_model=PaymentSessionResponse,
    status_code=201,
    summary="Open (or get back) the payment session for an order",
    description=(
        "Needs the order's access token as `Authorization: Bearer <token>`. Returns 201 with a new "
        "session, or 200 with the session already open (a double click never opens two). Send the "
        "payer to `connect_url`. A new session may be opened after the previous one failed or expired. "
        "`provider` names any enabled provider (DEFAULT_PROVIDER otherwise)."
    ),
    responses={
        200: {"description": "The session already open for this order", "model": PaymentSessionResponse},
        400: error("An invalid Idempotency-Key", "invalid_idempotency_key"),
        404: error("No such order, or the token is missing or not this order's", "not_found"),
        409: error(
            "The order cannot be paid now (`order_not_payable`: paid, cancelled...), its session is still "
            "being opened by another request, or a request with this Idempotency-Key is still running",
            "order_not_payable",
            "payment_session_in_progress",
            "idempotency_key_in_progress",
        ),
        422: error(
            "Invalid body, `provider` names no enabled provider, or the Idempotency-Key was used with "
            "another body",
            "validation_error",
            "provider_not_enabled",
            "idempotency_key_reused",
        ),
        502: error("The provider refused to open the session", "provider_error"),
        503: error(
            "The provider is unreachable, answered too late, or is not configured here; nothing is open",
            "provider_unavailable",
            "provider_not_configured",
        ),
    },
    dependencies=[rate_limited(Limit.ORDER_ACCESS)],
)
async def create_payment_session(
    order_id: str,
    request: Request,
    bearer: OrderBearer,
    engine: EngineDep,
    sessionmaker: SessionMakerDep,
    settings: SettingsDep,
    providers: ProvidersDep,
    dispatcher: DispatcherDep,
    body: PaymentSessionRequest | None = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    options = body or PaymentSessionRequest()
    access = order_access(order_id, bearer, settings)
    unknown_provider = options.provider is not None and options.provider not in providers
    if idempotency_key is not None or unknown_provider:
        # A key's replay, or the 422, is only for a bearer who may act on the order. Otherwise the
        # reservation checks the bearer in its own statement.
        await authorize_order(engine, access)
    scope = f"payment-session:{access.order_id}"
    fingerprint = fingerprint_of(str(access.order_id), options.model_dump())
    if idempotency_key is not None:
        async with sessionmaker() as db:
            stored = await replay(db, scope=scope, key=idempotency_key, fingerprint=fingerprint)
        if stored is not None:
            return JSONResponse(stored[1], status_code=stored[0], headers={"Idempotent-Replayed": "true"})

    if unknown_provider:
        raise ApiError(
            422,
            "provider_not_enabled",
            f"payment provider {options.provider!r} is not enabled here; GET /providers lists those that are",
            [
                {
                    "field": "body.provider",
                    "message": "not an enabled provider",
                    "type": "provider_not_enabled",
                }
            ],
        )
    session, created = await service.open_requested_session(
        engine,
        sessionmaker,
        settings,
        providers,
        access,
        options,
        payer_ip=request.client.host if request.client else None,
        outbox_recorded=dispatcher.wake,
    )
    status, payload = (
        (201 if created else 200),
        PaymentSessionResponse.model_validate(session).model_dump(mode="json"),
    )
    replayed = False
    if idempotency_key is not None:
        async with sessionmaker() as db, db.begin():
            status, payload, replayed = await remember(
                db, scope=scope, key=idempotency_key, fingerprint=fingerprint, status=status, body=payload
            )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code=status, headers=headers)


def _storefront_redirect(storefront_url: str, **params: str) -> str:
    parts = urlsplit(storefront_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _rejection_page(message: str, storefront_url: str) -> HTMLResponse:
    sentence = message[:1].upper() + message[1:]
    # The shop's home: STOREFRONT_URL is its return page, which has no order to show this payer.
    shop = urlunsplit(urlsplit(storefront_url)._replace(path="/", query="", fragment=""))
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Payment link not recognised</title>"
        "<body style='font-family:sans-serif;max-width:36em;margin:3em auto'>"
        "<h1>We could not recognise this payment link</h1>"
        f"<p>{html.escape(sentence)}.</p><p>No payment was recorded from this link. If you paid, your "
        "order will update by itself within a few minutes.</p>"
        f'<p><a href="{html.escape(shop)}">Back to the shop</a></p></body></html>'
    )
    return HTMLResponse(page, status_code=400)


@router.get(
    "/callback",
    summary="Where the provider sends the payer back",
    description=(
        "The provider's return parameters (our `state` and the provider's session id) must match a "
        "stored session: `state` the one sent for it, and the provider's id that session's. The status in "
        "the query is ignored: the provider is asked. Redirects (303) to STOREFRONT_URL with "
        "`order_id` and `status`; a link that matches nothing gets a 400 page and writes nothing."
    ),
    response_class=RedirectResponse,
    status_code=303,
    responses={
        303: {
            "description": "Back to the storefront: STOREFRONT_URL with `order_id` and `status`",
            "headers": {
                "Location": {
                    "description": "STOREFRONT_URL?order_id=<id>&status=<order status>",
                    "required": True,
                    "schema": {"type": "string"},
                    "example": "https://shop.example.com/checkout/result?order_id=6f1c2a9e-4b1d-4c55-9a39-"
                    "0b8a3f7d2e11&status=paid",
                }
            },
        },
        400: {
            "description": "Unknown or mismatched state/session: a page for the payer; nothing written",
            "content": {
                "text/html": {
                    "schema": {"type": "string"},
                    "example": "<!doctype html><html lang=en>...<h1>We could not recognise this payment "
                    "link</h1>...</html>",
                }
            },
        },
        422: error(
            "A query parameter that is not plain text (a control character, over 512 characters) or "
            "more than 32 parameters; nothing looked up",
            "validation_error",
        ),
    },
    dependencies=[Depends(plain_query_parameters), rate_limited(Limit.CALLBACK)],
    # Each provider's own return parameters, read by its parse_return beside `state`.
    openapi_extra={"parameters": return_parameters()},
)
async def callback(
    request: Request,
    sessionmaker: SessionMakerDep,
    settings: SettingsDep,
    providers: ProvidersDep,
    # Declared for the documentation: each provider's parse_return reads it beside its own parameters.
    state: Annotated[
        Annotated[str, Text(128)] | None,
        Query(description="The opaque token sent with the session, echoed back by the provider"),
    ] = None,
) -> Response:
    try:
        outcome = await service.handle_callback(
            sessionmaker,
            providers,
            request.query_params,
            provider_timeout=settings.callback_provider_timeout_seconds,
        )
    except service.CallbackRejected as exc:
        return _rejection_page(str(exc), settings.storefront_url)
    target = _storefront_redirect(
        settings.storefront_url, order_id=str(outcome.order_id), status=outcome.status
    )
    return RedirectResponse(target, status_code=303)


async def _receive_webhook(name: str, request: Request) -> Response:
    """What `WebhookRoute` (app/payments/webhooks.py) leaves to FastAPI: in practice an unknown
    provider's 404; an enabled provider's deliveries are answered there, by the same `receive`."""
    provider = request.app.state.providers.get(name)
    if provider is None:
        raise NotFound("webhook endpoint")
    body = await request.body()
    delivery = WebhookRequest(
        method=request.method, path=request.scope["path"], headers=request.headers, raw_body=body
    )
    ack = await webhooks.receive(request.app.state, provider, delivery)
    return Response(ack, media_type="application/json")


_WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error(
        "`invalid_webhook`: authentic, but its content cannot be used or stored (not JSON, nested too "
        "deeply, NUL or NaN, an identifier over 128 characters...); nothing written",
        "invalid_webhook",
    ),
    401: error(
        "`invalid_signature`: the signature, digest, date or request id is missing or invalid; nothing "
        "written",
        "invalid_signature",
    ),
    404: error("No enabled provider by that name", "not_found"),
}


@router.post(
    "/webhooks/{provider}",
    response_model=WebhookAck,
    summary="A provider's webhook (signed)",
    description=(
        "Verified by the named provider's own scheme against the raw body. A verified delivery is "
        "stored and acknowledged at once; a worker then asks the provider for the payment's status. "
        "Replays are acknowledged and ignored. The body and the headers it needs are the provider's: see "
        "its security scheme."
    ),
    responses=_WEBHOOK_RESPONSES,
    openapi_extra=webhook_openapi(),
)
async def provider_webhook(
    provider: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,31}$")], request: Request
) -> Response:
    return await _receive_webhook(provider, request)


@router.post(
    "/webhook",
    response_model=WebhookAck,
    summary=f"The {LEGACY_WEBHOOK_PROVIDER} webhook at the address merchants registered first",
    description=f"The same as `POST /webhooks/{LEGACY_WEBHOOK_PROVIDER}`: verified by that provider's "
    "scheme, stored, acknowledged at once; replays are acknowledged and ignored.",
    responses=_WEBHOOK_RESPONSES,
    openapi_extra=webhook_openapi(LEGACY_WEBHOOK_PROVIDER),
)
async def webhook(request: Request) -> Response:
    return await _receive_webhook(LEGACY_WEBHOOK_PROVIDER, request)


@router.post(
    "/orders/{order_id}/sync",
    response_model=SyncResponse,
    summary="Operator: ask the provider about the order's latest session (and open refunds) now",
    description=(
        "Reads the order's latest payment session from its provider, and each of its open refunds, "
        "and applies what is new through the one writer (source `operator`), as a webhook would. "
        "Useful for an order that looks stuck. Nothing is written when the provider does not answer."
    ),
    dependencies=[Depends(require_admin)],
    responses={
        404: error("No such order, or it has no payment session yet", "not_found"),
        502: error("The provider could not answer (about the session or a refund)", "provider_error"),
        503: error("The order's provider is not configured on this service", "provider_not_configured"),
    },
)
async def sync_order(
    order_id: str,
    bearer: OrderBearer,
    sessionmaker: SessionMakerDep,
    settings: SettingsDep,
    providers: ProvidersDep,
) -> SyncResponse:
    async with sessionmaker() as db:
        order = await get_order_for_bearer(db, order_id, bearer, settings)
    try:
        result = await service.sync_latest_session(sessionmaker, order.id, providers)
    except LookupError as exc:
        raise NotFound("payment session") from exc
    except ProviderError as exc:
        raise ApiError(502, "provider_error", f"the provider could not answer: {exc}") from exc
    try:
        synced = await refunds.sync_open_refunds(sessionmaker, order.id, providers)
    except (ProviderError, TimeoutError) as exc:
        raise ApiError(502, "provider_error", f"the provider could not answer about a refund: {exc}") from exc
    order_status = result.order_status
    if synced:
        async with sessionmaker() as db:
            order = await get_order_for_bearer(db, order_id, bearer, settings)
        order_status = order.status
    return SyncResponse(
        order_id=str(order.id),
        refunds_synced=synced,
        status=order_status,
        session_status=ORDER_STATUS_FOR[result.session_status],
        payment_status=result.session_status,
        changed=result.order_changed,
    )


_REFUND_ERRORS: dict[int | str, dict[str, Any]] = {404: error("No such order", "not_found")}


@router.post(
    "/orders/{order_id}/refunds",
    response_model=RefundOut,
    status_code=201,
    summary="Operator: refund (part of) a paid order",
    dependencies=[Depends(require_admin)],
    description=(
        "Gives money back to the payer through the provider that took the payment. `amount` is in "
        "minor units; without it, the rest of what was paid is refunded. Refunds never add up to more "
        "than was paid, even when requests run at once: each is reserved under the order's lock, "
        "counting every refund not failed, cancelled or expired, before the provider is called.\n\n"
        "The answer is the refund as the provider accepted it: `processing` (executed by the provider), "
        "or `open` (the merchant must confirm it in the provider's console). Its outcome arrives by "
        "webhook, the sweeper or `POST /orders/{id}/sync`; the order then moves to "
        "`partially_refunded`, then `refunded` once refunds add up to what was paid.\n\n"
        "Send an `Idempotency-Key` to retry safely: the same key with the same body returns the same "
        "refund (header `Idempotent-Replayed: true`), never a second one; with a different body, 422 "
        "`idempotency_key_reused`. A refused request writes nothing, except a refund the provider "
        "refused after it was reserved (kept as `failed`, not counted)."
    ),
    responses={
        **_REFUND_ERRORS,
        400: error("An invalid Idempotency-Key", "invalid_idempotency_key"),
        409: error(
            "`order_not_refundable` (not paid or partially refunded), `refund_exceeds_payment` or "
            "`nothing_to_refund`, `not_supported` (the provider cannot refund), `refund_refused` (the "
            "provider refused it: the refund is kept as failed), `refund_in_progress` or "
            "`idempotency_key_in_progress`",
            "order_not_refundable",
            "refund_exceeds_payment",
            "nothing_to_refund",
            "not_supported",
            "refund_refused",
            "refund_in_progress",
            "idempotency_key_in_progress",
        ),
        422: error(
            "Invalid body (`amount` must be > 0, `reason` at most 140 characters), `currency_mismatch`, "
            "or `idempotency_key_reused`",
            "validation_error",
            "currency_mismatch",
            "idempotency_key_reused",
        ),
        502: error(
            "The provider did not confirm the refund (no answer, or an error): the refund is kept as "
            "`needs_review` and still counts, since it may exist at the provider",
            "provider_error",
        ),
        503: error("The order's provider is not configured on this service", "provider_not_configured"),
    },
)
async def create_refund(
    order_id: str,
    bearer: OrderBearer,
    sessionmaker: SessionMakerDep,
    settings: SettingsDep,
    providers: ProvidersDep,
    body: RefundCreate | None = None,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="1-255 printable ASCII characters; a UUID is ideal"),
    ] = None,
) -> Response:
    ask = body or RefundCreate()
    async with sessionmaker() as db:
        order = await get_order_for_bearer(db, order_id, bearer, settings)
        scope = f"refund:{order.id}"
        fingerprint = fingerprint_of(str(order.id), ask.model_dump())
        stored = await replay(db, scope=scope, key=idempotency_key, fingerprint=fingerprint)
    if stored is not None:
        return JSONResponse(stored[1], status_code=stored[0], headers={"Idempotent-Replayed": "true"})

    refund, created = await refunds.create_refund(
        sessionmaker,
        order.id,
        providers,
        settings,
        refunds.RefundAsk(
            amount=ask.amount, reason=ask.reason, currency=ask.currency, idempotency_key=idempotency_key
        ),
    )
    status, payload = 201, RefundOut.model_validate(refund).model_dump(mode="json")
    replayed = not created
    if idempotency_key is not None:
        async with sessionmaker() as db, db.begin():
            status, payload, again = await remember(
                db, scope=scope, key=idempotency_key, fingerprint=fingerprint, status=status, body=payload
            )
            replayed = replayed or again
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code=status, headers=headers)


@router.get(
    "/orders/{order_id}/refunds",
    response_model=RefundList,
    summary="Operator: an order's refunds, oldest first",
    description=(
        "Every refund of the order, whatever its status: `open` ones wait for the merchant to confirm "
        "them in the provider's console, `needs_review` ones for a person."
    ),
    dependencies=[Depends(require_admin)],
    responses=_REFUND_ERRORS,
)
async def list_refunds(
    order_id: str, bearer: OrderBearer, db: DbSession, settings: SettingsDep
) -> RefundList:
    order = await get_order_for_bearer(db, order_id, bearer, settings)
    return RefundList(items=[RefundOut.model_validate(r) for r in await refunds.list_refunds(db, order.id)])
