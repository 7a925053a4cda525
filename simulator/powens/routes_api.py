"""The Powens Pay API under `/powens/2.0` (contract §1, §2, §4, §6), answering in Powens's shapes.

`POWENS_API_URL=<simulator>/powens/2.0` stands for `https://{domain}.biapi.pro/2.0`.
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from simulator.guard import note_caller
from simulator.powens.auth import client_of, get_powens, require, service_token
from simulator.powens.engine import (
    ADMIN_SCOPES,
    API_PREFIX,
    SCOPED_TOKEN_SCOPES,
    SERVICE_SCOPES,
    PowensSim,
    Token,
    check_amount,
)
from simulator.powens.errors import PowensError, validation_error
from simulator.powens.payments import STATES, Payment, PowensJSONResponse
from simulator.powens.schemas import (
    UNSIMULATED_UPDATES,
    PaymentInitRequest,
    PaymentUpdate,
    ScopedTokenRequest,
    split_scopes,
)

router = APIRouter(prefix=API_PREFIX, tags=["Powens Pay"], default_response_class=PowensJSONResponse)


def _answer(content: dict[str, Any]) -> PowensJSONResponse:
    """Returned as is (not through FastAPI's encoder), so amounts stay numbers with 10 decimals."""
    return PowensJSONResponse(content)


ServiceToken = Annotated[Token, Depends(service_token)]
ShowSensitive = Annotated[
    bool, Query(description="Identities too; needs payments:validate or payments:allow-sensitive")
]

READ_SCOPES = ADMIN_SCOPES | {"payments:read-only"}
SENSITIVE_SCOPES = ADMIN_SCOPES | {"payments:allow-sensitive", "payments:validate"}
CANCEL_SCOPES = ADMIN_SCOPES | {"payments:cancel"}

_TOKEN_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "client_id", "client_secret", "scope"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "scope": {
                            "oneOf": [
                                {"type": "string", "examples": ["payments:admin"]},
                                {"type": "array", "items": {"type": "string"}},
                            ]
                        },
                    },
                }
            }
        },
    }
}


def _sensitive(token: Token, show_sensitive: bool) -> bool:
    if show_sensitive:
        require(token, SENSITIVE_SCOPES, "show_sensitive=true")
    return show_sensitive


def _payment(powens: PowensSim, token: Token, payment_id: str) -> Payment:
    payment = powens.own_payment(token.client_id, payment_id)
    if payment is None:  # another client's payment is not even acknowledged
        raise PowensError(404, "notFound", f"Payment {payment_id} not found")
    return payment


@router.post(
    "/auth/token",
    operation_id="powensCreateServiceToken",
    summary="Create a service token (client_credentials, JSON)",
    description="Answers `{token, scope}` (no `expires_in`); the token is valid 30 minutes.",
    openapi_extra=_TOKEN_DOC,
)
async def create_token(request: Request) -> PowensJSONResponse:
    powens = get_powens(request)
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/json":
        raise PowensError(400, "invalidValue", "Bad request, the body must be JSON (application/json)")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise PowensError(400, "invalidValue", "Bad request, the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise PowensError(400, "invalidValue", "Bad request, the body must be a JSON object")
    for name in ("client_id", "client_secret"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise PowensError(400, "missingParameter", f"Bad request, {name} is required")
    app = powens.app(body["client_id"])
    if app is None or not hmac.compare_digest(app.client_secret.encode(), body["client_secret"].encode()):
        raise PowensError(401, "unauthorized", "Unknown client_id or wrong client_secret")
    note_caller(request, app_id=app.client_id)
    if body.get("grant_type") is None:
        raise PowensError(400, "missingParameter", "Bad request, grant_type is required")
    if body["grant_type"] != "client_credentials":
        raise PowensError(400, "invalidValue", "Bad request, grant_type must be client_credentials")
    scope = body.get("scope")
    if not isinstance(scope, str | list) or not scope:
        raise PowensError(400, "missingParameter", "Bad request, scope is required (e.g. payments:admin)")
    if isinstance(scope, list) and not all(isinstance(item, str) for item in scope):
        raise PowensError(400, "invalidValue", "Bad request, scope must be a string or an array of strings")
    scopes = frozenset(split_scopes(scope))
    unknown = sorted(scopes - SERVICE_SCOPES)
    if unknown or not scopes:
        raise PowensError(400, "invalidValue", f"Bad request, unknown scope {', '.join(unknown)}")
    token = powens.issue_token(app.client_id, scopes, powens.config.powens_token_ttl_seconds)
    return _answer({"token": token.value, "scope": " ".join(split_scopes(scope))})


@router.post(
    "/payments",
    operation_id="powensCreatePayment",
    summary="Create a one-time payment (one instruction)",
    description=(
        "Answers the Payment resource with an integer `id` and `state: created`. `client_redirect_uri` "
        "must be registered on the client and carry no query string (use `client_state`)."
    ),
)
async def create_payment(
    body: PaymentInitRequest, request: Request, token: ServiceToken, show_sensitive: ShowSensitive = False
) -> PowensJSONResponse:
    powens = get_powens(request)
    require(token, ADMIN_SCOPES, "Creating a payment")
    sensitive = _sensitive(token, show_sensitive)
    app = client_of(request, token)
    if "?" in body.client_redirect_uri or "#" in body.client_redirect_uri:
        raise PowensError(
            400,
            "invalidValue",
            "Bad request, client_redirect_uri must not contain query parameters: use client_state",
        )
    if not app.allows_redirect(body.client_redirect_uri):
        raise PowensError(
            400, "invalidValue", "Bad request, client_redirect_uri is not registered on this client"
        )
    if len(body.instructions) > 1:
        raise PowensError(400, "notSupported", "Bad request, bulk payments are not simulated")
    [instruction] = body.instructions
    if instruction.execution_date_type == "periodic":
        raise PowensError(400, "notSupported", "Bad request, periodic payments are not enabled")
    if instruction.execution_date_type == "deferred":
        if instruction.execution_date is None:
            raise PowensError(400, "missingParameter", "Bad request, a deferred payment needs execution_date")
        if instruction.execution_date <= powens.clock.now().date():
            raise PowensError(400, "invalidValue", "Bad request, execution_date must be in the future")
    if app.require_identities and (body.payer_identity is None or instruction.beneficiary_identity is None):
        raise PowensError(
            400, "missingParameter", "Bad request, payer_identity and beneficiary_identity are required"
        )
    check_amount(app, instruction.amount, instruction.currency)
    payment = powens.new_payment(app, body)
    return _answer(payment.resource(sensitive=sensitive))


@router.get(
    "/payments",
    operation_id="powensListPayments",
    summary="The client's payments, newest first",
)
async def list_payments(
    request: Request,
    token: ServiceToken,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PowensJSONResponse:
    powens = get_powens(request)
    require(token, READ_SCOPES, "Reading payments")
    if state is not None and state not in STATES:
        raise PowensError(400, "invalidValue", f"Bad request, state must be one of {', '.join(STATES)}")
    payments = sorted(
        (p for p in powens.payments.values() if p.client_id == token.client_id and state in (None, p.state)),
        key=lambda p: p.id,
        reverse=True,
    )
    return _answer({"payments": [p.resource(sensitive=False) for p in payments[offset : offset + limit]]})


@router.get(
    "/payments/{payment_id}",
    operation_id="powensGetPayment",
    summary="A payment, in the reference's shape",
)
async def get_payment(
    payment_id: str, request: Request, token: ServiceToken, show_sensitive: ShowSensitive = False
) -> PowensJSONResponse:
    powens = get_powens(request)
    require(token, READ_SCOPES, "Reading a payment")
    sensitive = _sensitive(token, show_sensitive)
    return _answer(_payment(powens, token, payment_id).resource(sensitive=sensitive))


@router.post(
    "/payments/{payment_id}",
    operation_id="powensUpdatePayment",
    summary='Cancel a payment: {"cancel": true}',
    description=(
        "A `created` payment is rejected at once (`error_code: cancelledByUser`); a non-instant "
        "`pending` one gets `state_detail: cancelling` and a `validate_uri` where the payer consents; "
        "anything else is `notSupported`."
    ),
)
async def update_payment(
    payment_id: str, body: PaymentUpdate, request: Request, token: ServiceToken
) -> PowensJSONResponse:
    powens = get_powens(request)
    payment = _payment(powens, token, payment_id)
    unsimulated = [name for name in UNSIMULATED_UPDATES if name in (body.model_extra or {})]
    if unsimulated or body.cancel is None:
        raise PowensError(400, "notSupported", 'Bad request, only {"cancel": true} is simulated')
    if body.cancel is not True:
        raise PowensError(400, "invalidValue", "Bad request, cancel must be true")
    require(token, CANCEL_SCOPES, "Cancelling a payment")
    app = client_of(request, token)
    if body.client_redirect_uri is not None and (
        "?" in body.client_redirect_uri or not app.allows_redirect(body.client_redirect_uri)
    ):
        raise PowensError(
            400, "invalidValue", "Bad request, client_redirect_uri must be registered and have no query"
        )
    powens.cancel(payment, redirect_uri=body.client_redirect_uri, state=body.client_state)
    return _answer(payment.resource(sensitive=False))


@router.post(
    "/payments/{payment_id}/scopedtoken",
    operation_id="powensPaymentScopedToken",
    summary="A token restricted to one payment, for the webview's `code`",
    description='Body `{"scope": ["payments:validate"]}`; `payments:admin` cannot be granted. Valid 7 days.',
)
async def scoped_token(
    payment_id: str, request: Request, token: ServiceToken, body: ScopedTokenRequest | None = None
) -> PowensJSONResponse:
    powens = get_powens(request)
    require(token, ADMIN_SCOPES, "Creating a payment-scoped token")
    payment = _payment(powens, token, payment_id)
    if body is None:
        raise validation_error([{"type": "missing", "loc": ("body", "scope"), "msg": "Field required"}])
    scopes = body.scopes
    if not scopes:
        raise PowensError(400, "missingParameter", "Bad request, scope is required, e.g. payments:validate")
    refused = sorted(scopes - SCOPED_TOKEN_SCOPES)
    if refused:
        raise PowensError(
            400, "invalidValue", f"Bad request, a payment-scoped token cannot have {', '.join(refused)}"
        )
    ttl = powens.config.powens_scoped_token_ttl_seconds
    scoped = powens.issue_token(token.client_id, scopes, ttl, payment_id=payment.id)
    payment.scoped_token = scoped.value
    return _answer(
        {
            "token": scoped.value,
            "scope": " ".join(split_scopes(body.scope)),
            "expires_in": ttl,
            "id_payment": payment.id,
        }
    )
