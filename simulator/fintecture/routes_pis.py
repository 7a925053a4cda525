"""The PIS v2 endpoints (contract §4, §5, §8, §9), answering in the official shapes."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from simulator.errors import ApiError
from simulator.fintecture.auth import get_fintecture, pis_app
from simulator.fintecture.config import AppConfig
from simulator.fintecture.engine import FintectureSim, new_connect_id
from simulator.fintecture.schemas import ConnectBody, PatchBody, PayoutBody, RefundBody
from simulator.fintecture.sessions import PAY_BY_BANK, PAYOUT, Session, payment_list_item, payment_resource

router = APIRouter(tags=["PIS"])

App = Annotated[AppConfig, Depends(pis_app)]
State = Annotated[str | None, Query(max_length=512, description="Echoed on the redirect and the webhook")]
Language = Annotated[str | None, Header(pattern=r"^[A-Za-z]{2}$")]
Country = Annotated[str | None, Header(pattern=r"^[A-Za-z]{2}$")]

_SESSION_ID = re.compile(r"[0-9a-f]{32}")
DEFAULT_PAYOUT_EXPIRY = 604_800


def _own_session(sim: FintectureSim, app: AppConfig, session_id: str) -> Session:
    if not _SESSION_ID.fullmatch(session_id):
        raise ApiError(400, "session_id_invalid_or_expired", "session_id must be 32 hexadecimal characters")
    session = sim.store.get_for_app(session_id, app.app_id)
    if session is None:  # another application's session is not even acknowledged
        raise ApiError(404, "not_found", "no such payment session")
    return session


def _check_urls(app: AppConfig, redirect_uri: str | None, origin_uri: str | None) -> None:
    if redirect_uri is not None and not app.allows_redirect(redirect_uri):
        raise ApiError(400, "invalid_field", "redirect_uri is not one of the application's registered URLs")
    if origin_uri is not None and urlsplit(origin_uri).scheme not in {"http", "https"}:
        raise ApiError(400, "invalid_field", "origin_uri must be an http(s) URL")


@router.post(
    "/pis/v2/connect",
    operation_id="createPisV2Connect",
    summary="Create a payment session (Immediate Transfer)",
    description=(
        "Returns `{meta: {session_id, url}}`; send the payer to `url`. `state` is required (as in "
        "production) except, in lenient mode, for a session without `redirect_uri`."
    ),
)
async def create_payment_session(
    body: ConnectBody,
    request: Request,
    app: App,
    state: State = None,
    redirect_uri: str | None = None,
    origin_uri: str | None = None,
    with_beneficiary: bool = False,
    with_virtualbeneficiary: bool = False,
    x_language: Language = None,
    x_country: Country = None,
    x_psu_type: Annotated[Literal["retail", "corporate", "all"] | None, Header()] = None,
    x_provider: Annotated[str | None, Header(pattern=r"^[A-Za-z0-9_-]{2,64}$")] = None,
) -> dict[str, Any]:
    sim = get_fintecture(request)
    if state is None and (app.mode == "strict" or redirect_uri is not None):
        raise ApiError(400, "mandatory_field_missing", "state is required")
    _check_urls(app, redirect_uri, origin_uri)
    attributes = body.data.attributes
    session = sim.new_session(
        app,
        type=PAY_BY_BANK,
        status="provider_required",
        expiry_seconds=body.meta.expiry or sim.config.default_expiry_seconds,
        amount=attributes.amount,
        currency=attributes.currency,
        communication=attributes.communication,
        end_to_end_id=attributes.end_to_end_id,
        execution_date=attributes.execution_date,
        scheme="INSTANT_SEPA" if attributes.scheme == "INSTANT_SEPA" else "SEPA",
        state=state,
        redirect_uri=redirect_uri,
        origin_uri=origin_uri,
        connect_id=new_connect_id(),
        preselected_provider=x_provider.lower() if x_provider else None,
        language=x_language,
        country=x_country,
        psu_type=x_psu_type,
        psu=body.meta.model_dump(mode="json", exclude_none=True),
        beneficiary=attributes.beneficiary.model_dump(mode="json") if attributes.beneficiary else None,
    )
    return {"meta": {"session_id": session.session_id, "url": sim.connect_url(session)}}


@router.get(
    "/pis/v2/payments",
    operation_id="getPisV2Payments",
    summary="List the application's payment sessions, newest first",
)
async def list_payments(
    request: Request,
    app: App,
    status: Annotated[str | None, Query(alias="filter[status]")] = None,
    since: Annotated[date | None, Query(alias="filter[from]")] = None,
    until: Annotated[date | None, Query(alias="filter[to]")] = None,
) -> dict[str, Any]:
    sim = get_fintecture(request)
    sessions = sorted(sim.store.of_app(app.app_id), key=lambda s: s.created_at, reverse=True)
    selected = [
        session
        for session in sessions
        if (status is None or session.status == status)
        and (since is None or session.created_at.date() >= since)
        and (until is None or session.created_at.date() <= until)
    ]
    return {"meta": {"count": len(selected)}, "data": [payment_list_item(s, app) for s in selected]}


@router.get(
    "/pis/v2/payments/{payment_id}",
    operation_id="getPaymentSession",
    summary="A payment session, in the official shape",
)
async def get_payment(
    payment_id: str, request: Request, app: App, with_virtualbeneficiary: bool = False
) -> dict[str, Any]:
    session = _own_session(get_fintecture(request), app, payment_id)
    return payment_resource(session, app, with_virtual_beneficiary=with_virtualbeneficiary)


@router.patch(
    "/pis/v2/payments/{payment_id}",
    operation_id="patchPisV2PaymentSession",
    summary='Cancel a payment: {"meta": {"status": "payment_cancelled"}}',
)
async def update_payment(payment_id: str, body: PatchBody, request: Request, app: App) -> dict[str, Any]:
    sim = get_fintecture(request)
    session = _own_session(sim, app, payment_id)
    sim.cancel(session)
    return payment_resource(session, app)


@router.get(
    "/pis/v2/payments/{payment_id}/refunds",
    operation_id="getPisV2PaymentRefunds",
    summary="Refunds of a payment",
)
async def list_refunds(payment_id: str, request: Request, app: App) -> dict[str, Any]:
    sim = get_fintecture(request)
    session = _own_session(sim, app, payment_id)
    refunds = sim.store.refunds_of(session.session_id)
    return {
        "meta": {
            "session_id": session.session_id,
            "count": len(refunds),
            "refunded_amount": str(sim.store.refunded_total(session.session_id)),
            "currency": session.currency,
        },
        "data": [
            {
                "id": refund.session_id,
                "type": "refunds",
                "attributes": {
                    "amount": refund.amount,
                    "currency": refund.currency,
                    "communication": refund.communication,
                    "status": refund.status,
                    "transfer_state": refund.transfer_state,
                    "state": refund.state,
                    "created_at": refund.created_at.isoformat(),
                },
            }
            for refund in refunds
        ],
    }


@router.post(
    "/pis/v2/refund",
    operation_id="createPisV2Refund",
    summary="Refund a payment, fully or partly",
    description=(
        "`meta.status` is `refund_accepted` (application with a payment account: done at once) or "
        "`refund_waiting` (external account: the merchant completes it outside the API)."
    ),
)
async def create_refund(body: RefundBody, request: Request, app: App, state: State = None) -> dict[str, Any]:
    sim = get_fintecture(request)
    original = sim.store.get_for_app(body.meta.session_id, app.app_id)
    if original is None:
        raise ApiError(400, "session_id_invalid_or_expired", "no payment session with this session_id")
    attributes = body.data.attributes
    refund, status = sim.refund(
        app, original, amount=attributes.amount, communication=attributes.communication, state=state
    )
    return {
        "meta": {
            "status": status,
            "session_id": refund.session_id,
            "refunded_session_id": original.session_id,
        }
    }


@router.post(
    "/pis/v2/request-for-payout",
    operation_id="createPisV2RequestForPayout",
    summary="Request for payout (verified payout)",
    description=(
        "Without `data.attributes.beneficiary`: 201 with a link where the payee gives an IBAN (sent "
        "by email or SMS with `meta.method`, which then needs `psu_email` or `psu_phone`). With a "
        "verified beneficiary: 200, the payment created at once (payment_created / completed, or "
        "initiated until `payout_transfer_seconds` have passed on the clock)."
    ),
    response_model=None,
)
async def request_for_payout(
    body: PayoutBody,
    request: Request,
    app: App,
    state: Annotated[str, Query(max_length=512)],
    x_language: Annotated[str, Header(pattern=r"^[A-Za-z]{2}$")],
    x_country: Country = None,
    redirect_uri: str | None = None,
) -> JSONResponse:
    sim = get_fintecture(request)
    _check_urls(app, redirect_uri, None)
    attributes = body.data.attributes
    method = body.meta.method or "link"
    if attributes.beneficiary is None and method == "email" and not body.meta.psu_email:
        raise ApiError(400, "mandatory_field_missing", "meta.psu_email is required to send the link by email")
    if attributes.beneficiary is None and method == "sms" and not body.meta.psu_phone:
        raise ApiError(400, "mandatory_field_missing", "meta.psu_phone is required to send the link by SMS")
    common: dict[str, Any] = {
        "amount": attributes.amount,
        "currency": attributes.currency,
        "communication": attributes.communication,
        "scheme": "INSTANT_SEPA",
        "state": state,
        "redirect_uri": redirect_uri,
        "language": x_language,
        "country": x_country,
        "psu": body.meta.model_dump(mode="json", exclude_none=True),
        "payout_method": method,
    }
    expiry = body.meta.expiry or DEFAULT_PAYOUT_EXPIRY
    if attributes.beneficiary is None:
        session = sim.new_session(
            app,
            type=PAYOUT,
            status="iban_required",
            expiry_seconds=expiry,
            connect_id=new_connect_id(),
            **common,
        )
        meta = {"code": 201, "session_id": session.session_id, "method": session.payout_method}
        meta["url"] = sim.connect_url(session)
        return JSONResponse({"meta": meta}, status_code=201)

    payee = attributes.beneficiary.model_dump(mode="json")
    payee["iban"] = payee["iban"].replace(" ", "").upper()
    session = sim.new_session(
        app, type=PAYOUT, status="session_initiated", expiry_seconds=expiry, beneficiary=payee, **common
    )
    sim.create_payout_payment(session, source="payout")
    return JSONResponse(
        {
            "meta": {"status": session.status, "session_id": session.session_id, "type": PAYOUT},
            "data": {
                "id": session.session_id,
                "type": "payments",
                "attributes": {
                    "amount": session.amount,
                    "currency": session.currency,
                    "scheme": session.scheme,
                    "communication": session.communication,
                    "end_to_end_id": session.end_to_end_id,
                    "execution_date": session.execution_date.isoformat(),
                    "transfer_state": session.transfer_state,
                    "debtor": {"bank_account_id": app.bank_account_id},
                    "beneficiary": payee,
                },
            },
        }
    )
