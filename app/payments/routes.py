"""Payment routes: open a session, the payer's return (/callback), the provider's webhook."""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from app.auth import bearer_token, require_admin
from app.db import DbSession
from app.errors import ApiError, NotFound
from app.idempotency import fingerprint_of, idempotent
from app.orders.service import get_order_for_bearer
from app.payments import inbox, service
from app.payments.reconcile import Source
from app.payments.schemas import PaymentSessionRequest, PaymentSessionResponse, SyncResponse, WebhookAck
from app.providers.base import ProviderError, WebhookRejected

router = APIRouter(tags=["payments"])


@router.post(
    "/orders/{order_id}/payment-session",
    response_model=PaymentSessionResponse,
    status_code=201,
    summary="Open (or get back) the payment session for an order",
    description=(
        "Needs the order's access token as `Authorization: Bearer <token>`. Returns 201 with a new "
        "session, or 200 with the session already open (a double click never opens two). Send the "
        "payer to `connect_url`. A new session may be opened after the previous one failed or expired."
    ),
    responses={
        404: {"description": "No such order for this token"},
        409: {"description": "Order not payable"},
    },
)
async def create_payment_session(
    order_id: str,
    request: Request,
    db: DbSession,
    body: PaymentSessionRequest | None = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    settings = request.app.state.settings
    order = await get_order_for_bearer(db, order_id, bearer_token(request), settings)
    options = body or PaymentSessionRequest()
    provider = service.get_provider(request.app.state.providers, options.provider)
    payer_ip = request.client.host if request.client else None

    async def open_it() -> tuple[int, dict[str, Any]]:
        session, created = await service.open_session(
            db,
            order.id,
            provider,
            settings,
            service.SessionOptions(language=options.language, bank_id=options.bank_id, payer_ip=payer_ip),
        )
        return (201 if created else 200), PaymentSessionResponse.of(session).model_dump(mode="json")

    status, payload, replayed = await idempotent(
        db,
        scope=f"payment-session:{order.id}",
        key=idempotency_key,
        fingerprint=fingerprint_of(str(order.id), options.model_dump()),
        handler=open_it,
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code=status, headers=headers)


def _storefront_redirect(storefront_url: str, **params: str) -> str:
    parts = urlsplit(storefront_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _rejection_page(message: str) -> HTMLResponse:
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Payment link not recognised</title>"
        "<body style='font-family:sans-serif;max-width:36em;margin:3em auto'>"
        "<h1>We could not recognise this payment link</h1>"
        f"<p>{html.escape(message)}.</p><p>No payment was recorded from this link. If you paid, your "
        "order will update by itself within a few minutes.</p></body></html>"
    )
    return HTMLResponse(page, status_code=400)


@router.get(
    "/callback",
    summary="Where the provider sends the payer back",
    description=(
        "The query's `state` must be the one stored for the session and `session_id` that session's "
        "provider id. The status in the query is ignored: the provider is asked. Redirects (303) to "
        "STOREFRONT_URL with `order_id` and `status`; a link that matches nothing gets a 400 page."
    ),
    response_class=RedirectResponse,
    status_code=303,
    responses={400: {"description": "Unknown or mismatched state/session; nothing written"}},
)
async def callback(request: Request, db: DbSession) -> Response:
    params = request.query_params
    try:
        outcome = await service.handle_callback(
            db,
            request.app.state.providers,
            state=params.get("state"),
            provider_session_id=params.get("session_id"),
            provider_timeout=request.app.state.settings.callback_provider_timeout_seconds,
        )
    except service.CallbackRejected as exc:
        return _rejection_page(str(exc))
    target = _storefront_redirect(
        request.app.state.settings.storefront_url, order_id=str(outcome.order_id), status=outcome.status
    )
    return RedirectResponse(target, status_code=303)


@router.post(
    "/webhook",
    response_model=WebhookAck,
    summary="Fintecture webhook (signed)",
    description=(
        "Verified against the raw body (Digest, Date within the tolerance window both ways, "
        "X-Request-ID, encrypted Signature). A verified delivery is stored and acknowledged at once; "
        "a worker then asks the provider for the payment's status. Replays are acknowledged and ignored."
    ),
    responses={401: {"description": "Signature, digest, date or request id invalid; nothing written"}},
)
async def webhook(request: Request, db: DbSession, background: BackgroundTasks) -> WebhookAck:
    provider = service.get_provider(request.app.state.providers, "fintecture")
    body = await request.body()
    try:
        hint = provider.verify_webhook(request.headers, body, service.utcnow())
    except WebhookRejected as exc:
        raise ApiError(401, "invalid_signature", f"webhook rejected: {exc.reason}") from exc
    stored = await inbox.record(db, provider.name, hint, body)
    # Runs after the response, hence after the commit: the worker will find the row.
    background.add_task(request.app.state.workers.wake)
    return WebhookAck(received=True, duplicate=not stored)


@router.post(
    "/orders/{order_id}/sync",
    response_model=SyncResponse,
    summary="Operator: ask the provider about the order's latest session now",
    dependencies=[Depends(require_admin)],
)
async def sync_order(order_id: str, request: Request, db: DbSession) -> SyncResponse:
    order = await get_order_for_bearer(db, order_id, bearer_token(request), request.app.state.settings)
    session = await service.latest_session(db, order.id)
    if session is None:
        raise NotFound("payment session")
    try:
        result = await service.sync_session(db, session, request.app.state.providers, source=Source.OPERATOR)
    except ProviderError as exc:
        raise ApiError(502, "provider_error", f"the provider could not answer: {exc}") from exc
    return SyncResponse(
        order_id=str(order.id),
        status=result.order_status.value,
        session_status=result.session_status.value,
        changed=result.order_changed,
    )
