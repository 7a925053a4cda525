"""What goes on the wire to and from Fintecture, as pure functions (contracts/fintecture.md §4, §5,
§8, §9, §11).

Requests: the connect query, headers and body, refunds and requests for payout; amounts as the
decimal strings Fintecture wants; queries and JSON encoded exactly as they are signed. Answers: the
connect, refund and payout results, the fields of a payment read, and the §11 error shape turned
into a `ProviderError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from app import money
from app.providers import transport
from app.providers.base import PayoutDelivery, PayoutRequest, ProviderError, RefundRequest, SessionRequest
from app.providers.transport import RETRYABLE_STATUSES, status_name

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")
MAX_STATE_LENGTH = 512
MAX_SESSION_ID_LENGTH = 128

_CURRENCY = re.compile(r"^[A-Z]{3}$")

# Session types (`meta.type`), lower-cased (§5).
REFUND_TYPE = "refund"
PAYOUT_TYPE = "requestforpayout"


# --- Encoding ------------------------------------------------------------------------------------


def format_amount(amount: Decimal, currency: str) -> str:
    """The decimal string Fintecture wants, with exactly the currency's minor digits ('273.50')."""
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be a positive finite number")
    return money.format_amount(money.to_minor_units(amount, currency.upper()), currency.upper())


def parse_amount(value: object) -> Decimal | None:
    """A provider amount ('273', '550.60', or a JSON number) as Decimal; None when absent or bad."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = repr(value)
    if not isinstance(value, str):
        return None
    try:
        parsed = Decimal(value.strip())
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def encode_query(params: Sequence[tuple[str, str]]) -> str:
    """Percent-encode every reserved character, so the query we sign is the query on the wire."""
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in params)


def encode_json(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the Digest is computed over exactly these bytes, and they are what is sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- POST /pis/v2/connect (§4) -------------------------------------------------------------------


def _two_letters(value: str | None) -> str | None:
    if not value:
        return None
    head = value.strip()[:2]
    if len(head) == 2 and head.isascii() and head.isalpha():
        return head
    return None


def connect_request(
    request: SessionRequest,
) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, Any]]:
    """Query parameters, extra headers and JSON body of POST /pis/v2/connect (§4)."""
    currency = request.currency.strip().upper()
    if not _CURRENCY.match(currency):
        raise ValueError("currency must be an ISO 4217 code")
    if not request.state or len(request.state) > MAX_STATE_LENGTH:
        raise ValueError(f"state must be 1 to {MAX_STATE_LENGTH} characters")
    if not request.redirect_uri:
        raise ValueError("redirect_uri is required")
    payer = request.payer
    meta: dict[str, Any] = {"psu_name": payer.name, "psu_email": payer.email}
    if payer.phone:
        meta["psu_phone"] = payer.phone
    if payer.company:
        meta["psu_company"] = payer.company
    if payer.address:
        address = {
            key: str(payer.address[key])
            for key in ("street", "number", "complement", "zip", "city", "country")
            if payer.address.get(key) not in (None, "")
        }
        if address:
            meta["psu_address"] = address
    if payer.ip:
        meta["psu_ip"] = payer.ip
    meta["expiry"] = request.expiry_seconds
    body: dict[str, Any] = {
        "meta": meta,
        "data": {
            "type": "PIS",
            "attributes": {
                "amount": format_amount(request.amount, currency),
                "currency": currency,
                "communication": request.communication,
            },
        },
    }
    query = [("state", request.state), ("redirect_uri", request.redirect_uri)]
    if request.origin_uri:
        query.append(("origin_uri", request.origin_uri))
    headers = {"x-psu-type": "retail"}
    if language := _two_letters(request.language):
        headers["x-language"] = language.lower()
    if country := _two_letters(request.country):
        headers["x-country"] = country.upper()
    if request.bank_id:
        headers["x-provider"] = request.bank_id
    return query, headers, body


def connect_result(body: Mapping[str, Any], *, production: bool) -> tuple[str, str]:
    """(session id, connect URL) from the connect answer; a ProviderError when either is unusable."""
    meta = _obj(body.get("meta"))
    session_id = meta.get("session_id")
    url = meta.get("url")
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
        raise ProviderError(
            "Fintecture connect answered without a valid session_id",
            http_status=200,
            code="invalid_response",
        )
    allowed = {"https"} if production else {"https", "http"}
    if not isinstance(url, str) or urlsplit(url).scheme not in allowed or not urlsplit(url).netloc:
        raise ProviderError(
            "Fintecture connect answered without a valid url", http_status=200, code="invalid_response"
        )
    return session_id, url


# --- GET /pis/v2/payments/{session_id} (§5) ------------------------------------------------------


@dataclass(frozen=True)
class PaymentRead:
    """The fields of a payment read the adapter uses, as read (the status not mapped yet)."""

    raw_status: str
    transfer_state: str | None
    amount: Decimal | None
    currency: str | None
    communication: str | None
    customer_id: str | None
    bank_id: str | None
    is_refund: bool = False  # a refund session (`type=Refund`, §9)
    refunded_session_id: str | None = None
    # The session's kind in lower case (`paybybank`, `refund`, `requestforpayout`...), when given.
    session_type: str | None = None


def payment_read(body: Mapping[str, Any], provider_session_id: str) -> PaymentRead:
    """The payment read's fields; a ProviderError when it is about another session or has no status."""
    meta = _obj(body.get("meta"))
    data = _obj(body.get("data"))
    attributes = _obj(data.get("attributes"))

    returned_id = meta.get("session_id") or data.get("id")
    if returned_id is not None and returned_id != provider_session_id:
        raise ProviderError(
            "Fintecture answered for another session", http_status=200, code="invalid_response"
        )
    raw_status = meta.get("status")
    if not isinstance(raw_status, str) or not raw_status:
        raise ProviderError(
            "Fintecture payment has no status", http_status=200, code="invalid_response", retryable=True
        )
    transfer_state = attributes.get("transfer_state") or data.get("transfer_state")
    currency = attributes.get("currency")
    communication = attributes.get("communication")
    session_type = str(meta.get("type") or attributes.get("type") or "").strip().lower() or None
    return PaymentRead(
        raw_status=raw_status,
        transfer_state=transfer_state if isinstance(transfer_state, str) and transfer_state else None,
        amount=parse_amount(attributes.get("amount")),
        currency=currency.strip().upper() if isinstance(currency, str) and currency.strip() else None,
        communication=communication if isinstance(communication, str) else None,
        customer_id=_str_or_none(meta.get("customer_id")),
        bank_id=_str_or_none(meta.get("provider")),
        is_refund=session_type == REFUND_TYPE,
        refunded_session_id=_str_or_none(
            meta.get("refunded_session_id") or attributes.get("refunded_session_id")
        ),
        session_type=session_type,
    )


# --- POST /pis/v2/refund (§9) --------------------------------------------------------------------


def refund_request(request: RefundRequest) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Query (our `state`) and JSON body of POST /pis/v2/refund; the amount as the decimal string."""
    if not SESSION_ID.match(request.provider_session_id):
        raise ValueError("not a Fintecture session id")
    if not request.state or len(request.state) > MAX_STATE_LENGTH:
        raise ValueError(f"state must be 1 to {MAX_STATE_LENGTH} characters")
    body: dict[str, Any] = {
        "meta": {"session_id": request.provider_session_id},
        "data": {
            "attributes": {
                "amount": format_amount(request.amount, request.currency),
                "communication": request.communication[:140],
            }
        },
    }
    return [("state", request.state)], body


def refund_result(body: Mapping[str, Any]) -> tuple[str, str]:
    """(refund session id, raw status) from either documented answer shape: `meta.status` is the
    status, or `meta{status: 200, code: <status>}`. A ProviderError when either is unusable."""
    meta = _obj(body.get("meta"))
    raw_status = meta.get("status")
    if not isinstance(raw_status, str) or not raw_status.strip():
        raw_status = meta.get("code")
    session_id = meta.get("session_id") or _obj(body.get("data")).get("id")
    if not isinstance(raw_status, str) or not raw_status.strip():
        raise ProviderError(
            "Fintecture refund answered without a status", http_status=200, code="invalid_response"
        )
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
        raise ProviderError(
            "Fintecture refund answered without a valid session_id",
            http_status=200,
            code="invalid_response",
        )
    return session_id, raw_status.strip().lower()


# --- POST /pis/v2/request-for-payout (§8) -------------------------------------------------------


def payout_request(
    request: PayoutRequest,
) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, Any]]:
    """Query, extra headers and JSON body of POST /pis/v2/request-for-payout.

    Without a beneficiary (the payee gives an account on Fintecture's page): `meta.method` says how
    the page reaches them and `meta.expiry` how long it stays valid. With one, the verified
    beneficiary goes in `data.attributes.beneficiary` and the payout starts at once.
    """
    currency = request.currency.strip().upper()
    if not _CURRENCY.match(currency):
        raise ValueError("currency must be an ISO 4217 code")
    if not request.state or len(request.state) > MAX_STATE_LENGTH:
        raise ValueError(f"state must be 1 to {MAX_STATE_LENGTH} characters")
    if not request.redirect_uri:
        raise ValueError("redirect_uri is required")
    beneficiary = request.beneficiary
    meta: dict[str, Any] = {}
    name = request.payee_name or (beneficiary.name if beneficiary else None)
    if name:
        meta["psu_name"] = name
    if request.payee_email:
        meta["psu_email"] = request.payee_email
    attributes: dict[str, Any] = {
        "amount": format_amount(request.amount, currency),
        "currency": currency,
        "communication": request.communication[:140],
    }
    if beneficiary is None:
        if request.delivery is PayoutDelivery.EMAIL and not request.payee_email:
            raise ValueError("a payout link sent by email needs the payee's email")
        if request.delivery is PayoutDelivery.SMS and not request.payee_phone:
            raise ValueError("a payout link sent by SMS needs the payee's phone number")
        if request.payee_phone:
            meta["psu_phone"] = request.payee_phone
        meta["expiry"] = request.expiry_seconds
        meta["method"] = request.delivery.value
    else:
        attributes["beneficiary"] = {
            "name": beneficiary.name,
            "iban": beneficiary.iban,
            "swift_bic": beneficiary.bic,
        }
    body = {"meta": meta, "data": {"type": "payments", "attributes": attributes}}
    query = [("state", request.state), ("redirect_uri", request.redirect_uri)]
    # Required by Fintecture for a payout (the payee's page language); `en` as for connect.
    headers = {"x-language": (_two_letters(request.language) or "en").lower()}
    return query, headers, body


@dataclass(frozen=True)
class PayoutCreated:
    """The request-for-payout answer, as read: a payee link (no beneficiary given) or the created
    payment's status and transfer state (a verified beneficiary)."""

    session_id: str
    url: str | None
    raw_status: str | None
    transfer_state: str | None


def payout_result(body: Mapping[str, Any], *, production: bool) -> PayoutCreated:
    """The request-for-payout answer's fields; a ProviderError when it names no session, carries a
    URL that cannot be used, or carries neither a URL nor a status."""
    meta = _obj(body.get("meta"))
    data = _obj(body.get("data"))
    attributes = _obj(data.get("attributes"))
    session_id = meta.get("session_id") or data.get("id")
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
        raise ProviderError(
            "Fintecture request-for-payout answered without a valid session_id",
            http_status=200,
            code="invalid_response",
        )
    url = meta.get("url")
    allowed = {"https"} if production else {"https", "http"}
    if url is not None and (
        not isinstance(url, str) or urlsplit(url).scheme not in allowed or not urlsplit(url).netloc
    ):
        raise ProviderError(
            "Fintecture request-for-payout answered with an unusable url",
            http_status=200,
            code="invalid_response",
        )
    raw_status = meta.get("status")
    raw_status = raw_status.strip().lower() if isinstance(raw_status, str) and raw_status.strip() else None
    if url is None and raw_status is None:
        raise ProviderError(
            "Fintecture request-for-payout answered neither a payee url nor a status",
            http_status=200,
            code="invalid_response",
        )
    transfer_state = attributes.get("transfer_state") or data.get("transfer_state")
    return PayoutCreated(
        session_id=session_id,
        url=url,
        raw_status=raw_status,
        transfer_state=transfer_state if isinstance(transfer_state, str) and transfer_state else None,
    )


# --- Answers in general (§11) --------------------------------------------------------------------


def json_object(response: httpx.Response, context: str, *, retryable: bool = False) -> dict[str, Any]:
    """The answer's JSON object; a ProviderError when the body is anything else."""
    return transport.json_object(response, f"Fintecture {context}", retryable=retryable)


def error_details(response: httpx.Response) -> tuple[str | None, str | None, str]:
    """(code, log_id, short detail) from the §11 error shape; tolerant of anything else."""
    try:
        body = response.json()
    except ValueError:
        return None, None, ""
    if not isinstance(body, dict):
        return None, None, ""
    code = body.get("code") if isinstance(body.get("code"), str) else None
    log_id = body.get("log_id") if isinstance(body.get("log_id"), str) else None
    parts: list[str] = []
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors[:3]:
            if not isinstance(error, dict):
                continue
            if code is None and isinstance(error.get("code"), str):
                code = error["code"]
            text = " ".join(
                str(error[key]) for key in ("code", "title", "detail", "message") if error.get(key)
            )
            if text:
                parts.append(text)
    return code, log_id, "; ".join(parts)[:300]


def api_error(response: httpx.Response, context: str) -> ProviderError:
    """The ProviderError for an unsuccessful answer: the provider's code and log id when it gave them."""
    status = response.status_code
    code, log_id, detail = error_details(response)
    return ProviderError(
        f"Fintecture {context} failed" + (f": {detail}" if detail else ""),
        http_status=status,
        code=code or status_name(status),
        log_id=log_id,
        retryable=status in RETRYABLE_STATUSES,
    )


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
