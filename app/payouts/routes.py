"""Payout routes: create (operator, idempotent), read, list, sync, and the payee's return."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.auth import require_admin
from app.deps import DbSession, ProvidersDep, SessionMakerDep, SettingsDep
from app.errors import ApiError
from app.idempotency import fingerprint_of, remember, replay
from app.openapi import error, return_parameters
from app.payouts import service
from app.payouts.schemas import (
    PayoutCallbackResult,
    PayoutCreate,
    PayoutOut,
    PayoutPage,
    PayoutSyncResponse,
)
from app.providers.base import Beneficiary, PayoutStatus

router = APIRouter(tags=["payouts"])

_ONE: dict[int | str, dict[str, Any]] = {404: error("No such payout", "not_found")}


@router.post(
    "/payouts",
    response_model=PayoutOut,
    status_code=201,
    summary="Operator: pay a payee out",
    dependencies=[Depends(require_admin)],
    description=(
        "Sends `amount` (minor units) from the merchant's payout account to a payee.\n\n"
        "- **No verified beneficiary**: the provider collects the payee's account on its own page. "
        "The answer is `awaiting_payee` with `payee_url`: send the payee there (`delivery: link`), or "
        "let the provider email (`email`, needs `payee.email`) or text it (`sms`, needs `payee.phone`). "
        "The payee comes back through `GET /payouts/callback`; webhooks follow.\n"
        "- **Verified `beneficiary`** (name, IBAN, BIC, each checked): the transfer starts at once; the "
        "answer is `initiated` (or `paid` when the provider executed it already), then webhooks, the "
        "sweeper or `POST /payouts/{id}/sync` bring it to `paid`.\n\n"
        "Send an `Idempotency-Key` to retry safely: the same key with the same body returns the same "
        "payout (header `Idempotent-Replayed: true`), never a second one; with a different body, 422 "
        "`idempotency_key_reused`. A refused request writes nothing, except a payout the provider "
        "refused after it was reserved (kept as `failed`)."
    ),
    responses={
        400: error(
            "Malformed JSON or an invalid Idempotency-Key", "malformed_json", "invalid_idempotency_key"
        ),
        409: error(
            "`not_supported` (the provider cannot pay out), `payout_refused` (the provider refused it: "
            "kept as failed), `payout_in_progress` or `idempotency_key_in_progress`",
            "not_supported",
            "payout_refused",
            "payout_in_progress",
            "idempotency_key_in_progress",
        ),
        422: error(
            "Invalid body (an IBAN or BIC that does not check out, a missing payee...), "
            "`provider_not_enabled`, or `idempotency_key_reused`",
            "validation_error",
            "provider_not_enabled",
            "idempotency_key_reused",
        ),
        502: error(
            "The provider did not confirm the payout: it is kept as `needs_review`, since it may exist "
            "at the provider",
            "provider_error",
        ),
    },
)
async def create_payout(
    body: PayoutCreate,
    sessionmaker: SessionMakerDep,
    settings: SettingsDep,
    providers: ProvidersDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="1-255 printable ASCII characters; a UUID is ideal"),
    ] = None,
) -> Response:
    fingerprint = fingerprint_of(body)
    async with sessionmaker() as db:
        stored = await replay(
            db, scope=service.IDEMPOTENCY_SCOPE, key=idempotency_key, fingerprint=fingerprint
        )
    if stored is not None:
        return JSONResponse(stored[1], status_code=stored[0], headers={"Idempotent-Replayed": "true"})

    payee, beneficiary = body.payee, body.beneficiary
    payout, created = await service.create_payout(
        sessionmaker,
        providers,
        settings,
        service.PayoutAsk(
            provider=body.provider,
            amount=body.amount,
            currency=body.currency,
            reference=body.reference,
            communication=body.communication,
            payee_name=payee.name if payee else None,
            payee_email=str(payee.email) if payee and payee.email else None,
            payee_phone=payee.phone if payee else None,
            delivery=body.delivery,
            expiry_seconds=body.expiry_seconds,
            language=body.language,
            beneficiary=Beneficiary(name=beneficiary.name, iban=beneficiary.iban, bic=beneficiary.bic)
            if beneficiary
            else None,
            idempotency_key=idempotency_key,
        ),
    )
    status, payload = 201, PayoutOut.of(payout).model_dump(mode="json")
    replayed = not created
    if idempotency_key is not None:
        async with sessionmaker() as db, db.begin():
            status, payload, again = await remember(
                db,
                scope=service.IDEMPOTENCY_SCOPE,
                key=idempotency_key,
                fingerprint=fingerprint,
                status=status,
                body=payload,
            )
            replayed = replayed or again
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code=status, headers=headers)


_PAYEE_MESSAGES: dict[PayoutStatus, tuple[str, str]] = {
    PayoutStatus.AWAITING_PAYEE: (
        "We have not received your account details",
        "Open the link you were sent again to give the account the money should go to.",
    ),
    PayoutStatus.ACCOUNT_RECEIVED: (
        "Thank you",
        "Your account details were received; your payout is on its way.",
    ),
    PayoutStatus.INITIATED: ("Thank you", "Your payout is on its way to your account."),
    PayoutStatus.PAID: ("Your payout was sent", "The money has left our account and is on its way to yours."),
    PayoutStatus.NEEDS_REVIEW: ("We are checking your payout", "We will contact you if we need anything."),
}
_NOT_DONE = ("This payout did not go through", "Please contact us so we can send it again.")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _payee_page(title: str, message: str, status_code: int) -> HTMLResponse:
    page = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
        "<body style='font-family:sans-serif;max-width:36em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(page, status_code=status_code)


@router.get(
    "/payouts/callback",
    response_model=PayoutCallbackResult,
    summary="Where the provider sends the payee back",
    description=(
        "The provider's return parameters (our `state` and the provider's payout id) must match a "
        "stored payout: `state` the one sent for it, and the provider's id that payout's. The status in "
        "the query is ignored: the provider is asked. A browser (`Accept: text/html`) gets a page "
        "saying where the payout stands; other clients get JSON. A link that matches nothing is a 400 "
        "`invalid_payout_link` and writes nothing. Register `PUBLIC_URL/payouts/callback` as a "
        "redirect URI with the provider."
    ),
    responses={
        200: {
            "description": "Where the payout stands (a page for a browser)",
            "content": {
                "text/html": {
                    "schema": {"type": "string"},
                    "example": "<!doctype html><html lang=en>...<h1>Thank you</h1><p>Your payout is on its "
                    "way to your account.</p></body></html>",
                }
            },
        },
        400: error(
            "Unknown or mismatched state/payout id (`invalid_payout_link`; a page for a browser); "
            "nothing written",
            "invalid_payout_link",
        ),
    },
    # Each provider's own return parameters, read by its parse_return beside `state`.
    openapi_extra={"parameters": return_parameters()},
)
async def payout_callback(
    request: Request, sessionmaker: SessionMakerDep, settings: SettingsDep, providers: ProvidersDep
) -> Response:
    try:
        outcome = await service.handle_callback(
            sessionmaker,
            providers,
            request.query_params,
            provider_timeout=settings.callback_provider_timeout_seconds,
        )
    except service.CallbackRejected as exc:
        if _wants_html(request):
            return _payee_page(
                "We could not recognise this payout link",
                f"{str(exc)[:1].upper()}{str(exc)[1:]}. Nothing was recorded from it.",
                400,
            )
        raise ApiError(400, "invalid_payout_link", str(exc)) from exc
    if _wants_html(request):
        return _payee_page(*_PAYEE_MESSAGES.get(outcome.status, _NOT_DONE), 200)
    return JSONResponse(
        PayoutCallbackResult(payout_id=outcome.payout_id, status=outcome.status).model_dump(mode="json")
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # a date or time without a zone is read as UTC


@router.get(
    "/payouts",
    response_model=PayoutPage,
    summary="Operator: list payouts, newest first",
    description=(
        "Filter by `status`, `reference` and creation time (`created_from` inclusive, `created_to` "
        "exclusive); page with `limit` and `cursor` (the previous page's `next_cursor`)."
    ),
    dependencies=[Depends(require_admin)],
    responses={
        422: error(
            "Invalid filter or cursor, or `created_from` not before `created_to`",
            "validation_error",
            "invalid_cursor",
            "invalid_range",
        )
    },
)
async def list_payouts(
    db: DbSession,
    status: Annotated[PayoutStatus | None, Query(description="Only payouts in this status")] = None,
    reference: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only payouts with this reference")
    ] = None,
    created_from: Annotated[
        datetime | None,
        Query(description="Created at or after this instant (ISO 8601; no zone = UTC), e.g. 2026-11-01"),
    ] = None,
    created_to: Annotated[
        datetime | None, Query(description="Created before this instant (ISO 8601; no zone = UTC)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
) -> PayoutPage:
    start, end = _utc(created_from), _utc(created_to)
    if start is not None and end is not None and start >= end:
        raise ApiError(
            422,
            "invalid_range",
            "created_from must be before created_to",
            [{"field": "query.created_to", "message": "must be after created_from", "type": "invalid_range"}],
        )
    page = await service.list_payouts(
        db, status=status, reference=reference, created_from=start, created_to=end, limit=limit, cursor=cursor
    )
    return PayoutPage(items=[PayoutOut.of(payout) for payout in page.payouts], next_cursor=page.next_cursor)


@router.get(
    "/payouts/{payout_id}",
    response_model=PayoutOut,
    summary="Operator: a payout and its status history",
    description="The payout as stored, with every status transition (`transitions`), oldest first.",
    dependencies=[Depends(require_admin)],
    responses=_ONE,
)
async def get_payout(payout_id: str, db: DbSession) -> PayoutOut:
    payout, transitions = await service.read_payout(db, payout_id)
    return PayoutOut.of(payout, transitions)


@router.post(
    "/payouts/{payout_id}/sync",
    response_model=PayoutSyncResponse,
    summary="Operator: ask the provider about a payout now",
    description=(
        "Reads the payout from its provider and applies what is new through the payouts writer "
        "(source `operator`), as a webhook would. Nothing is written when the provider does not answer."
    ),
    dependencies=[Depends(require_admin)],
    responses={
        **_ONE,
        409: error(
            "`payout_not_at_provider`: the payout never reached the provider", "payout_not_at_provider"
        ),
        502: error("The provider could not answer", "provider_error"),
        503: error("The payout's provider is not configured on this service", "provider_not_configured"),
    },
)
async def sync_payout(
    payout_id: str, sessionmaker: SessionMakerDep, providers: ProvidersDep
) -> PayoutSyncResponse:
    payout, changed = await service.sync_now(sessionmaker, providers, payout_id)
    return PayoutSyncResponse(changed=changed, payout=PayoutOut.of(payout))
