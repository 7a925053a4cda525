"""What goes on the wire to and from Powens Pay, as pure functions (contracts/powens.md §1-§4).

Requests: the payment creation body (§2) with its amount as a JSON number carrying exactly the
currency's minor digits, and the webview URL (§3). Answers: the payment id and scoped token, the
fields of a payment read (§4), and the HTTP error shape turned into a `ProviderError`.

Uncertain readings chosen here (the contract's [?] and gaps):

- `amount` is sent as a JSON **number** (REF's example also shows a string [?]); written from the
  Decimal with exactly the currency's exponent (`50.90`), never through a float.
- One instruction, `execution_date_type: first_open_day` (plain SEPA credit transfer, offered by
  every Pay bank); `reference_id` is left unset as the contract says.
- `payer_identity` is "optional" in REF but "required" in the guides: it is sent as an
  `individual` when the payer's name has at least two words (first word = first name, the rest =
  last name) plus the e-mail; with a one-word name it is left out rather than sent incomplete.
- `beneficiary_identity` is left out: a corporate identity needs a registration number
  (`scheme_name` + `identification`) that these settings do not hold, and REF marks it optional.
- The payer's bank is preselected (`connector_uuid`) only when `bank_id` is a UUID; any other
  value is ignored (the storefront's bank ids may be another provider's codes).
- `client_state` is bounded at 512 characters (Powens allows 2000), the same bound as on return.
- The read amount and currency come from the payment's only instruction; a payment with any other
  number of instructions has no readable amount (so a paid state on it goes to review).
- Currency is read leniently: a string, or an object with its code in `id` (or `code`).
- Error bodies carry `request_id` (SDK) or `requestId` (FORMANCE) [?]: both are read.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from app import money
from app.providers import transport
from app.providers.base import Payer, ProviderError, SessionRequest
from app.providers.transport import RETRYABLE_STATUSES, status_name

# Powens payment ids are integers; on our side they are their decimal digits.
PAYMENT_ID = re.compile(r"^[1-9][0-9]{0,17}$")
MAX_PAYMENT_ID_LENGTH = 18
MAX_STATE_LENGTH = 512
MAX_LABEL_LENGTH = 140  # SEPA remittance information
EXECUTION_DATE_TYPE = "first_open_day"

_CURRENCY = re.compile(r"^[A-Z]{3}$")


# --- Encoding ------------------------------------------------------------------------------------


def format_amount(amount: Decimal, currency: str) -> Decimal:
    """The amount with exactly the currency's minor digits (Decimal('50.90')); ValueError otherwise."""
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be a positive finite number")
    code = currency.strip().upper()
    return money.to_decimal(money.to_minor_units(amount, code), code)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON in which a Decimal is written as the number it spells (`50.90`), never
    through a float."""
    return _encode(value).encode("utf-8")


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("cannot encode a non-finite Decimal")
        return format(value, "f")
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("JSON object keys must be strings")
            items.append(json.dumps(key, ensure_ascii=False) + ":" + _encode(item))
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, float):
        raise TypeError("floats are never sent: use Decimal")
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


# --- POST /payments (§2) -------------------------------------------------------------------------


def check_redirect_uri(redirect_uri: str) -> str:
    """The `client_redirect_uri`: absolute http(s), no query string (§2), no fragment."""
    parts = urlsplit(redirect_uri)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("the Powens redirect URI must be an absolute http(s) URL")
    if parts.query or "?" in redirect_uri:
        raise ValueError("the Powens redirect URI must not contain a query string (use client_state)")
    if parts.fragment or "#" in redirect_uri:
        raise ValueError("the Powens redirect URI must not contain a fragment")
    return redirect_uri


def payer_identity(payer: Payer) -> dict[str, Any] | None:
    """An `individual` identity from the payer's name and e-mail; None when the name has one word."""
    words = payer.name.split()
    if len(words) < 2:
        return None
    identity: dict[str, Any] = {
        "kind": "individual",
        "first_name": words[0],
        "last_name": " ".join(words[1:]),
    }
    if payer.email:
        identity["email"] = payer.email
    return identity


def _connector_uuid(bank_id: str | None) -> str | None:
    if not bank_id:
        return None
    try:
        return str(uuid.UUID(bank_id.strip()))
    except ValueError:
        return None


def create_payment_body(
    request: SessionRequest, *, beneficiary_iban: str, beneficiary_name: str
) -> dict[str, Any]:
    """The JSON body of POST /payments (§2): one instruction to the merchant's account."""
    currency = request.currency.strip().upper()
    if not _CURRENCY.match(currency):
        raise ValueError("currency must be an ISO 4217 code")
    if not request.state or len(request.state) > MAX_STATE_LENGTH:
        raise ValueError(f"state must be 1 to {MAX_STATE_LENGTH} characters")
    label = request.communication.strip()
    if not label or len(label) > MAX_LABEL_LENGTH:
        raise ValueError(f"the payment label must be 1 to {MAX_LABEL_LENGTH} characters")
    if not beneficiary_iban or not beneficiary_name:
        raise ValueError("the beneficiary IBAN and name are required")
    instruction: dict[str, Any] = {
        "label": label,
        "amount": format_amount(request.amount, currency),
        "currency": currency,
        "execution_date_type": EXECUTION_DATE_TYPE,
        "beneficiary": {
            "scheme_name": "iban",
            "identification": beneficiary_iban,
            "label": beneficiary_name,
        },
    }
    body: dict[str, Any] = {
        "client_redirect_uri": check_redirect_uri(request.redirect_uri),
        "client_state": request.state,
        "instructions": [instruction],
    }
    if (identity := payer_identity(request.payer)) is not None:
        body["payer_identity"] = identity
    if (connector := _connector_uuid(request.bank_id)) is not None:
        body["connector_uuid"] = connector
    return body


def payment_id(body: Mapping[str, Any], context: str) -> int:
    """The payment's integer `id`; a ProviderError when it has none."""
    value = body.get("id")
    if not is_payment_id(value):
        raise ProviderError(
            f"Powens {context} answered without a valid payment id", http_status=200, code="invalid_response"
        )
    assert isinstance(value, int)
    return value


def is_payment_id(value: object) -> bool:
    """A positive integer (never a bool) of at most 18 digits."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**MAX_PAYMENT_ID_LENGTH


# --- POST /payments/{id}/scopedtoken (§1) --------------------------------------------------------

SCOPED_TOKEN_BODY: dict[str, Any] = {"scope": ["payments:validate"]}


def scoped_token(body: Mapping[str, Any], expected_id: int) -> str:
    """The payment-scoped token; a ProviderError when absent or issued for another payment."""
    token = body.get("token")
    if not isinstance(token, str) or not token.strip():
        raise ProviderError(
            "Powens scoped token answer has no token",
            http_status=200,
            code="invalid_response",
            retryable=True,
        )
    returned = body.get("id_payment")
    if returned is not None and returned != expected_id:
        raise ProviderError(
            "Powens scoped token was issued for another payment", http_status=200, code="invalid_response"
        )
    return token.strip()


# --- The webview URL (§3) ------------------------------------------------------------------------


def webview_url(
    base_url: str,
    *,
    language: str,
    domain: str,
    client_id: str,
    redirect_uri: str,
    code: str,
    payment_id: int,
    state: str,
) -> str:
    """`{base}/{lang}/payment?domain=…&client_id=…&redirect_uri=…&code=…&payment_id=…&state=…`,
    every parameter percent-encoded (reserved characters included)."""
    params = (
        ("domain", domain),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("code", code),
        ("payment_id", str(payment_id)),
        ("state", state),
    )
    query = "&".join(f"{key}={quote(value, safe='')}" for key, value in params)
    return f"{base_url.rstrip('/')}/{quote(language, safe='')}/payment?{query}"


# --- GET /payments/{id} (§4) ---------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentRead:
    """The fields of a payment read the adapter uses, as read (the state not mapped yet)."""

    state: str
    state_detail: str | None
    error_code: str | None
    amount: Decimal | None
    currency: str | None
    label: str | None
    connector_uuid: str | None


def parse_amount(value: object) -> Decimal | None:
    """An amount (a JSON number read as Decimal, an int, or a numeric string); None when absent or bad."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, (int, Decimal)):
        value = str(value)
    if not isinstance(value, str):
        return None
    try:
        parsed = Decimal(value.strip())
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def parse_currency(value: object) -> str | None:
    """`"EUR"` or `{"id": "EUR", "symbol": "€", ...}` as `EUR`; None when neither."""
    if isinstance(value, Mapping):
        value = value.get("id") if value.get("id") is not None else value.get("code")
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if _CURRENCY.match(code) else None


def payment_read(body: Mapping[str, Any], expected_id: int) -> PaymentRead:
    """The payment's fields; a ProviderError when it is about another payment or has no state."""
    returned = body.get("id")
    if returned is not None and returned != expected_id:
        raise ProviderError("Powens answered for another payment", http_status=200, code="invalid_response")
    state = body.get("state")
    if not isinstance(state, str) or not state.strip():
        raise ProviderError(
            "Powens payment has no state", http_status=200, code="invalid_response", retryable=True
        )
    instructions = body.get("instructions")
    instruction: Mapping[str, Any] = {}
    if isinstance(instructions, list) and len(instructions) == 1 and isinstance(instructions[0], Mapping):
        instruction = instructions[0]
    label = instruction.get("label")
    return PaymentRead(
        state=state.strip(),
        state_detail=_str_or_none(body.get("state_detail")),
        error_code=_str_or_none(body.get("error_code")),
        amount=parse_amount(instruction.get("amount")),
        currency=parse_currency(instruction.get("currency")),
        label=label if isinstance(label, str) else None,
        connector_uuid=_str_or_none(body.get("connector_uuid")),
    )


# --- Answers in general --------------------------------------------------------------------------


def json_object(
    response: httpx.Response, context: str, *, retryable: bool = False, exact_numbers: bool = False
) -> dict[str, Any]:
    """The answer's JSON object (numbers with a fraction as Decimal when `exact_numbers`); a
    ProviderError when the body is anything else."""
    return transport.json_object(
        response, f"Powens {context}", retryable=retryable, exact_numbers=exact_numbers
    )


def error_details(response: httpx.Response) -> tuple[str | None, str | None, str]:
    """(code, request id, short detail) from `{code, description, message, request_id}`."""
    try:
        body = response.json()
    except ValueError:
        return None, None, ""
    if not isinstance(body, dict):
        return None, None, ""
    code = _str_or_none(body.get("code"))
    request_id = body.get("request_id", body.get("requestId"))
    log_id = (
        str(request_id) if isinstance(request_id, (str, int)) and not isinstance(request_id, bool) else None
    )
    detail = " ".join(
        str(body[key]) for key in ("code", "description", "message") if isinstance(body.get(key), str)
    )
    return code, log_id or None, detail[:300]


def api_error(response: httpx.Response, context: str) -> ProviderError:
    """The ProviderError for an unsuccessful answer: Powens's code and request id when it gave them."""
    status = response.status_code
    code, log_id, detail = error_details(response)
    return ProviderError(
        f"Powens {context} failed" + (f": {detail}" if detail else ""),
        http_status=status,
        code=code or status_name(status),
        log_id=log_id,
        retryable=status in RETRYABLE_STATUSES,
    )


def _str_or_none(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
