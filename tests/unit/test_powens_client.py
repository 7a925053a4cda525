"""The Powens adapter's wire shapes: amounts, the create and scoped-token calls, the webview URL,
payment reads, cancels, the payer's return, and the service token's caching and refresh.

The HTTP side is httpx's MockTransport answering like Powens (contracts/powens.md §1-§4, §6); every
expected shape is written here from the contract, never produced with the adapter's helpers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from app.providers.base import (
    Payer,
    PaymentStatus,
    ProviderError,
    ReturnRejected,
    SessionRequest,
)
from app.providers.powens.client import PowensProvider
from app.providers.powens.payloads import encode_json, format_amount, parse_amount, parse_currency
from app.providers.powens.transport import PowensTransport
from app.providers.transport import TransportOptions

BASE = "https://shop-sandbox.biapi.pro/2.0"
CLIENT_ID = "84213570"
CLIENT_SECRET = "w1Yc8Qm0xZ7rT2pL"
CALLBACK = "https://pay.shop.example/callback"
IBAN = "FR7630006000011234567890189"
STATE = "s7Kq_2x-Z9"
PAYMENT_ID = 4242


async def _no_sleep(_: float) -> None:
    return None


class Powens:
    """A scripted Powens: records every request, answers through `routes`."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.tokens_minted = 0
        self.valid_tokens: set[str] = set()
        self.payment: dict[str, Any] = payment_body()
        self.overrides: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {}

    def bodies(self, method: str, path: str) -> list[Any]:
        return [
            json.loads(r.content)
            for r in self.requests
            if r.method == method and r.url.path == urlsplit(BASE).path + path
        ]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/2.0")
        override = self.overrides.get((request.method, path))
        if override is not None:
            return override(request)
        if request.method == "POST" and path == "/auth/token":
            assert "authorization" not in request.headers
            self.tokens_minted += 1
            token = f"svc-token-{self.tokens_minted}"
            self.valid_tokens.add(token)
            return httpx.Response(200, json={"token": token, "scope": "payments:admin"})
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.valid_tokens:
            return httpx.Response(401, json={"code": "invalidToken", "description": "expired"})
        if request.method == "POST" and path == "/payments":
            return httpx.Response(200, json={**self.payment, "state": "created"})
        if request.method == "POST" and path == f"/payments/{PAYMENT_ID}/scopedtoken":
            return httpx.Response(
                200,
                json={"token": "scoped/tok+en=", "scope": "payments:validate", "expires_in": 604800,
                      "id_payment": PAYMENT_ID},
            )  # fmt: skip
        if path == f"/payments/{PAYMENT_ID}":
            return httpx.Response(200, json=self.payment)
        return httpx.Response(
            404, json={"code": "notFound", "description": "no such payment", "request_id": "r-1"}
        )


def payment_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": PAYMENT_ID,
        "state": "done",
        "state_detail": None,
        "error_code": None,
        "error_description": None,
        "connector_uuid": "338178e6-3d01-564f-9a7b-52ca442459bf",
        "instructions": [
            {
                "label": "ORD-7Q2K",
                "amount": 50.9,
                "currency": {"id": "EUR", "symbol": "€", "precision": 2, "name": "Euro"},
                "state": "done",
            }
        ],
    }
    body.update(changes)
    return body


@pytest.fixture
def powens() -> Powens:
    return Powens()


@pytest.fixture
async def http(powens: Powens) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(powens.handler)) as client:
        yield client


def make_transport(http: httpx.AsyncClient, clock: Callable[[], float] | None = None) -> PowensTransport:
    options = TransportOptions(sleep=_no_sleep, **({"clock": clock} if clock else {}))
    return PowensTransport(
        http, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, base_url=BASE, options=options
    )


def make_provider(http: httpx.AsyncClient, clock: Callable[[], float] | None = None) -> PowensProvider:
    return PowensProvider(
        make_transport(http, clock),
        domain="shop-sandbox",
        webview_base_url="https://webview.powens.com",
        beneficiary_iban=IBAN,
        beneficiary_name="ACME Corp.",
        callback_url=CALLBACK,
        webhook_secret=b"whsec",
        language="fr",
    )


def session_request(**changes: Any) -> SessionRequest:
    values: dict[str, Any] = {
        "amount": Decimal("50.9"),
        "currency": "EUR",
        "communication": "ORD-7Q2K",
        "state": STATE,
        "redirect_uri": CALLBACK,
        "origin_uri": "https://shop.example/",
        "payer": Payer(name="Germaine Michu", email="germaine@example.test"),
        "expiry_seconds": 1800,
    }
    values.update(changes)
    return SessionRequest(**values)


# --- Amounts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "wire"),
    [
        ("50.9", "EUR", "50.90"),
        ("50.90", "EUR", "50.90"),
        ("273", "EUR", "273.00"),
        ("0.01", "eur", "0.01"),
        ("1234567890.12", "GBP", "1234567890.12"),
        ("9.99", "PLN", "9.99"),
    ],
)
def test_amounts_are_json_numbers_with_the_currency_digits(amount: str, currency: str, wire: str) -> None:
    encoded = encode_json({"amount": format_amount(Decimal(amount), currency)})
    assert encoded == b'{"amount":' + wire.encode() + b"}"
    assert json.loads(encoded, parse_float=Decimal)["amount"] == Decimal(wire)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("50.901", "EUR"), ("0", "EUR"), ("-1", "EUR"), ("NaN", "EUR"), ("Infinity", "EUR"), ("1", "XXX")],
)
def test_amounts_that_cannot_be_sent_are_refused(amount: str, currency: str) -> None:
    with pytest.raises(ValueError):
        format_amount(Decimal(amount), currency)


def test_floats_are_never_encoded() -> None:
    with pytest.raises(TypeError):
        encode_json({"amount": 50.9})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (50.9, Decimal("50.9")),
        (Decimal("1.0000000000"), Decimal("1")),
        ("1.0000000000", Decimal("1")),
        (273, Decimal("273")),
        (True, None),
        (None, None),
        ("abc", None),
        ("NaN", None),
        ([], None),
    ],
)
def test_amounts_are_read_leniently(value: object, expected: Decimal | None) -> None:
    assert parse_amount(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("EUR", "EUR"),
        ("eur ", "EUR"),
        ({"id": "EUR", "symbol": "€", "precision": 2}, "EUR"),
        ({"code": "GBP"}, "GBP"),
        ({"symbol": "€"}, None),
        ("EURO", None),
        (978, None),
        (None, None),
    ],
)
def test_currencies_are_read_leniently(value: object, expected: str | None) -> None:
    assert parse_currency(value) == expected


# --- Opening a session -----------------------------------------------------------------------------


async def test_create_session_wire_shapes(http: httpx.AsyncClient, powens: Powens) -> None:
    created = await make_provider(http).create_session(session_request())
    assert created.provider_session_id == "4242"

    (token_body,) = powens.bodies("POST", "/auth/token")
    assert token_body == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "payments:admin",
    }
    create_request = next(r for r in powens.requests if r.url.path == "/2.0/payments")
    assert create_request.headers["authorization"] == "Bearer svc-token-1"
    assert create_request.headers["content-type"] == "application/json"
    assert b'"amount":50.90' in create_request.content
    (body,) = powens.bodies("POST", "/payments")
    assert body == {
        "client_redirect_uri": CALLBACK,
        "client_state": STATE,
        "instructions": [
            {
                "label": "ORD-7Q2K",
                "amount": 50.9,
                "currency": "EUR",
                "execution_date_type": "first_open_day",
                "beneficiary": {"scheme_name": "iban", "identification": IBAN, "label": "ACME Corp."},
            }
        ],
        "payer_identity": {
            "kind": "individual",
            "first_name": "Germaine",
            "last_name": "Michu",
            "email": "germaine@example.test",
        },
    }
    assert powens.bodies("POST", f"/payments/{PAYMENT_ID}/scopedtoken") == [{"scope": ["payments:validate"]}]

    # §3, current form, every parameter percent-encoded.
    assert created.connect_url == (
        "https://webview.powens.com/fr/payment"
        "?domain=shop-sandbox.biapi.pro"
        "&client_id=84213570"
        "&redirect_uri=https%3A%2F%2Fpay.shop.example%2Fcallback"
        "&code=scoped%2Ftok%2Ben%3D"
        "&payment_id=4242"
        "&state=s7Kq_2x-Z9"
    )
    query = dict(parse_qsl(urlsplit(created.connect_url).query))
    assert query["code"] == "scoped/tok+en="
    assert query["redirect_uri"] == CALLBACK


async def test_the_state_is_percent_encoded_in_the_webview_url(http: httpx.AsyncClient) -> None:
    created = await make_provider(http).create_session(session_request(state="a b&c=d/é"))
    assert "&state=a%20b%26c%3Dd%2F%C3%A9" in created.connect_url
    assert dict(parse_qsl(urlsplit(created.connect_url).query))["state"] == "a b&c=d/é"


async def test_a_one_word_payer_name_sends_no_identity(http: httpx.AsyncClient, powens: Powens) -> None:
    await make_provider(http).create_session(
        session_request(payer=Payer(name="Cher", email="c@example.test"))
    )
    (body,) = powens.bodies("POST", "/payments")
    assert "payer_identity" not in body


async def test_a_uuid_bank_id_preselects_the_connector(http: httpx.AsyncClient, powens: Powens) -> None:
    provider = make_provider(http)
    await provider.create_session(session_request(bank_id="338178E6-3D01-564F-9A7B-52CA442459BF"))
    await provider.create_session(session_request(bank_id="ftecfr"))
    first, second = powens.bodies("POST", "/payments")
    assert first["connector_uuid"] == "338178e6-3d01-564f-9a7b-52ca442459bf"
    assert "connector_uuid" not in second


@pytest.mark.parametrize(
    "changes",
    [
        {"redirect_uri": CALLBACK + "?order=1"},
        {"redirect_uri": CALLBACK + "?"},
        {"redirect_uri": CALLBACK + "#done"},
        {"redirect_uri": "/callback"},
        {"state": ""},
        {"state": "x" * 513},
        {"communication": ""},
        {"communication": "x" * 141},
        {"currency": "EURO"},
        {"amount": Decimal("10.001")},
    ],
)
async def test_unsendable_sessions_are_refused_before_any_call(
    http: httpx.AsyncClient, powens: Powens, changes: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await make_provider(http).create_session(session_request(**changes))
    assert powens.requests == []


async def test_a_create_answer_without_an_integer_id_is_refused(
    http: httpx.AsyncClient, powens: Powens
) -> None:
    powens.overrides[("POST", "/payments")] = lambda _: httpx.Response(
        200, json={"id": "4242", "state": "created"}
    )
    with pytest.raises(ProviderError, match="valid payment id"):
        await make_provider(http).create_session(session_request())


async def test_a_scoped_token_for_another_payment_is_refused(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.overrides[("POST", f"/payments/{PAYMENT_ID}/scopedtoken")] = lambda _: httpx.Response(
        200, json={"token": "t", "scope": "payments:validate", "id_payment": 99}
    )
    with pytest.raises(ProviderError, match="another payment"):
        await make_provider(http).create_session(session_request())


async def test_a_create_that_may_have_arrived_is_never_sent_again(
    http: httpx.AsyncClient, powens: Powens
) -> None:
    def read_timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    powens.overrides[("POST", "/payments")] = read_timeout
    with pytest.raises(ProviderError, match="may have been processed"):
        await make_provider(http).create_session(session_request())
    assert len([r for r in powens.requests if r.url.path == "/2.0/payments"]) == 1


async def test_a_create_answered_503_is_not_sent_again(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.overrides[("POST", "/payments")] = lambda _: httpx.Response(503, json={"code": "unavailable"})
    with pytest.raises(ProviderError) as caught:
        await make_provider(http).create_session(session_request())
    assert caught.value.retryable
    assert len([r for r in powens.requests if r.url.path == "/2.0/payments"]) == 1


async def test_errors_carry_the_code_and_request_id(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.overrides[("POST", "/payments")] = lambda _: httpx.Response(
        400,
        json={
            "code": "invalidBeneficiary",
            "description": "Bad request",
            "message": None,
            "requestId": "abc",
        },
    )
    with pytest.raises(ProviderError) as caught:
        await make_provider(http).create_session(session_request())
    error = caught.value
    assert (error.http_status, error.code, error.log_id, error.retryable) == (
        400,
        "invalidBeneficiary",
        "abc",
        False,
    )


# --- Reading a payment -------------------------------------------------------------------------------


async def test_a_payment_read(http: httpx.AsyncClient, powens: Powens) -> None:
    snapshot = await make_provider(http).get_payment("4242")
    assert powens.requests[-1].method == "GET"
    assert powens.requests[-1].url.path == "/2.0/payments/4242"
    assert snapshot.provider == "powens"
    assert snapshot.provider_session_id == "4242"
    assert snapshot.status is PaymentStatus.SUCCEEDED
    assert snapshot.raw_status == "done"
    assert snapshot.transfer_state is None
    assert (snapshot.amount, snapshot.currency, snapshot.communication) == (
        Decimal("50.90"),
        "EUR",
        "ORD-7Q2K",
    )
    assert snapshot.bank_id == "338178e6-3d01-564f-9a7b-52ca442459bf"
    assert snapshot.raw["id"] == PAYMENT_ID


async def test_an_amount_echoed_with_ten_digits_is_read_exactly(
    http: httpx.AsyncClient, powens: Powens
) -> None:
    powens.overrides[("GET", f"/payments/{PAYMENT_ID}")] = lambda _: httpx.Response(
        200,
        content=b'{"id":4242,"state":"done","instructions":[{"label":"L","amount":1234567.8900000001,'
        b'"currency":"EUR"}]}',
    )
    snapshot = await make_provider(http).get_payment("4242")
    assert snapshot.amount == Decimal("1234567.8900000001")  # never rounded through a float


async def test_a_rejected_payment_keeps_its_error_code(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.payment = payment_body(state="rejected", error_code="CancelledByUser")
    snapshot = await make_provider(http).get_payment("4242")
    assert (snapshot.status, snapshot.raw_status, snapshot.transfer_state) == (
        PaymentStatus.FAILED,
        "rejected",
        "CancelledByUser",
    )


@pytest.mark.parametrize(
    "instructions",
    [
        [],
        None,
        [{"label": "L", "currency": "EUR"}],
        [{"label": "L", "amount": 50.9}],
        [{"label": "L", "amount": 50.9, "currency": {"symbol": "€"}}],
        [{"label": "A", "amount": 1, "currency": "EUR"}, {"label": "B", "amount": 2, "currency": "EUR"}],
    ],
)
async def test_paid_without_a_readable_amount_and_currency_needs_review(
    http: httpx.AsyncClient, powens: Powens, instructions: Any
) -> None:
    powens.payment = payment_body(instructions=instructions)
    snapshot = await make_provider(http).get_payment("4242")
    assert snapshot.status is PaymentStatus.NEEDS_REVIEW
    assert snapshot.review_reason == "paid status without a readable amount and currency"


async def test_an_unknown_state_needs_review(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.payment = payment_body(state="settled")
    snapshot = await make_provider(http).get_payment("4242")
    assert snapshot.status is PaymentStatus.NEEDS_REVIEW
    assert snapshot.review_reason is not None and "'settled'" in snapshot.review_reason


async def test_an_answer_about_another_payment_is_refused(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.payment = payment_body(id=99)
    with pytest.raises(ProviderError, match="another payment"):
        await make_provider(http).get_payment("4242")


async def test_an_unknown_payment_is_not_found(http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError) as caught:
        await make_provider(http).get_payment("77")
    assert (caught.value.http_status, caught.value.code, caught.value.retryable) == (404, "not_found", False)


@pytest.mark.parametrize("session_id", ["", "abc", "0", "042", "-1", "1" * 19, "12 ", "4242/../x"])
async def test_ids_that_are_not_powens_ids_are_refused(http: httpx.AsyncClient, session_id: str) -> None:
    with pytest.raises(ValueError):
        await make_provider(http).get_payment(session_id)


async def test_reads_are_retried(http: httpx.AsyncClient, powens: Powens) -> None:
    answers = iter([httpx.Response(503), httpx.Response(502), httpx.Response(200, json=payment_body())])
    powens.overrides[("GET", f"/payments/{PAYMENT_ID}")] = lambda _: next(answers)
    snapshot = await make_provider(http).get_payment("4242")
    assert snapshot.status is PaymentStatus.SUCCEEDED
    assert len([r for r in powens.requests if r.method == "GET"]) == 3


# --- Cancelling ----------------------------------------------------------------------------------


async def test_cancel_payment(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.payment = payment_body(state="rejected", error_code="cancelledByUser")
    snapshot = await make_provider(http).cancel_payment("4242", state=STATE)
    assert powens.bodies("POST", f"/payments/{PAYMENT_ID}") == [
        {"cancel": True, "client_redirect_uri": CALLBACK, "client_state": STATE}
    ]
    assert (snapshot.status, snapshot.transfer_state) == (PaymentStatus.FAILED, "cancelledByUser")


async def test_a_cancel_awaiting_the_payers_consent(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.payment = payment_body(state="pending", state_detail="cancelling")
    snapshot = await make_provider(http).cancel_payment("4242")
    assert powens.bodies("POST", f"/payments/{PAYMENT_ID}") == [
        {"cancel": True, "client_redirect_uri": CALLBACK}
    ]
    assert snapshot.status is PaymentStatus.PROCESSING


async def test_a_cancel_powens_refuses(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.overrides[("POST", f"/payments/{PAYMENT_ID}")] = lambda _: httpx.Response(
        400, json={"code": "notSupported", "description": "Bad request, cancellation not supported"}
    )
    with pytest.raises(ProviderError) as caught:
        await make_provider(http).cancel_payment("4242")
    assert caught.value.code == "notSupported"


async def test_a_cancel_answer_that_is_not_a_payment_is_followed_by_a_read(
    http: httpx.AsyncClient, powens: Powens
) -> None:
    powens.overrides[("POST", f"/payments/{PAYMENT_ID}")] = lambda _: httpx.Response(200, json={"ok": True})
    powens.payment = payment_body(state="rejected", error_code="CancelledByClient")
    snapshot = await make_provider(http).cancel_payment("4242")
    assert snapshot.transfer_state == "CancelledByClient"
    assert powens.requests[-1].method == "GET"


# --- The payer's return ------------------------------------------------------------------------------


async def test_parse_return(http: httpx.AsyncClient) -> None:
    provider = make_provider(http)
    hint = provider.parse_return({"state": STATE, "id_payment": "4242"})
    assert (hint.state, hint.provider_session_id, hint.error) == (STATE, "4242", None)
    hint = provider.parse_return({"state": STATE, "id_payment": "4242", "error": "cancelled"})
    assert hint.error == "cancelled"
    hint = provider.parse_return(
        {"state": STATE, "id_payment": "4242", "error": "cancelled", "error_code": "CancelledByUser"}
    )
    assert hint.error == "CancelledByUser"
    hint = provider.parse_return({"state": STATE, "id_payment": "4242", "payment_state": "pending"})
    assert (hint.provider_session_id, hint.error) == ("4242", None)
    # Garbage in the optional fields is dropped, never echoed.
    hint = provider.parse_return({"state": STATE, "id_payment": "4242", "error_code": "<script>"})
    assert hint.error is None


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"state": STATE},
        {"id_payment": "4242"},
        {"state": "", "id_payment": "4242"},
        {"state": STATE, "id_payment": ""},
        {"state": STATE, "id_payment": "abc"},
        {"state": STATE, "id_payment": "42a"},
        {"state": STATE, "id_payment": "-42"},
        {"state": STATE, "id_payment": "0"},
        {"state": STATE, "id_payment": "1" * 19},
        {"state": "x" * 513, "id_payment": "4242"},
        {"state": STATE, "session_id": "b2bca2bcd3b64a32a7da0766df59a7d2"},  # another provider's return
    ],
)
async def test_returns_without_state_and_id_are_rejected(
    http: httpx.AsyncClient, query: dict[str, str]
) -> None:
    with pytest.raises(ReturnRejected):
        make_provider(http).parse_return(query)


# --- The service token -------------------------------------------------------------------------------


async def test_the_token_is_reused_for_25_minutes(http: httpx.AsyncClient, powens: Powens) -> None:
    now = [1000.0]
    provider = make_provider(http, clock=lambda: now[0])
    await provider.get_payment("4242")
    now[0] += 25 * 60 - 0.1
    await provider.get_payment("4242")
    assert powens.tokens_minted == 1
    now[0] = 1000.0 + 25 * 60
    await provider.get_payment("4242")
    assert powens.tokens_minted == 2
    gets = [r for r in powens.requests if r.method == "GET"]
    assert [r.headers["authorization"] for r in gets] == [
        "Bearer svc-token-1",
        "Bearer svc-token-1",
        "Bearer svc-token-2",
    ]


async def test_concurrent_callers_mint_one_token(http: httpx.AsyncClient, powens: Powens) -> None:
    provider = make_provider(http)
    await asyncio.gather(*(provider.get_payment("4242") for _ in range(10)))
    assert powens.tokens_minted == 1


@pytest.mark.parametrize("refusal", [401, 403])
async def test_a_refused_token_is_minted_again_once(
    http: httpx.AsyncClient, powens: Powens, refusal: int
) -> None:
    provider = make_provider(http)
    await provider.get_payment("4242")
    powens.valid_tokens.clear()  # Powens forgot it (revoked, or its clock ran faster)
    if refusal == 403:
        powens.overrides[("GET", f"/payments/{PAYMENT_ID}")] = lambda r: (
            httpx.Response(403, json={"code": "forbidden"})
            if r.headers["authorization"].removeprefix("Bearer ") not in powens.valid_tokens
            else httpx.Response(200, json=powens.payment)
        )
    snapshot = await provider.get_payment("4242")
    assert snapshot.status is PaymentStatus.SUCCEEDED
    assert powens.tokens_minted == 2


async def test_a_refused_token_on_a_post_is_minted_again_once(
    http: httpx.AsyncClient, powens: Powens
) -> None:
    provider = make_provider(http)
    await provider.get_payment("4242")
    powens.valid_tokens.clear()
    created = await provider.create_session(session_request())
    assert created.provider_session_id == "4242"
    assert powens.tokens_minted == 2
    assert len(powens.bodies("POST", "/payments")) == 2  # refused once (401, no work done), then sent


async def test_a_token_refused_twice_is_an_error(http: httpx.AsyncClient, powens: Powens) -> None:
    powens.overrides[("GET", f"/payments/{PAYMENT_ID}")] = lambda _: httpx.Response(
        401, json={"code": "invalidToken"}
    )
    with pytest.raises(ProviderError) as caught:
        await make_provider(http).get_payment("4242")
    assert (caught.value.http_status, caught.value.code) == (401, "invalidToken")
    assert powens.tokens_minted == 2


async def test_an_access_token_answer_is_accepted(http: httpx.AsyncClient, powens: Powens) -> None:
    def mint(_: httpx.Request) -> httpx.Response:
        powens.valid_tokens.add("legacy-token")
        return httpx.Response(200, json={"access_token": "legacy-token", "token_type": "Bearer"})

    powens.overrides[("POST", "/auth/token")] = mint
    await make_provider(http).get_payment("4242")
    assert powens.requests[-1].headers["authorization"] == "Bearer legacy-token"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"scope": "payments:admin"}),
        httpx.Response(200, json={"token": ""}),
        httpx.Response(200, content=b"not json"),
        httpx.Response(401, json={"code": "invalidClient", "description": "bad credentials"}),
    ],
)
async def test_an_unusable_token_answer_is_an_error(
    http: httpx.AsyncClient, powens: Powens, answer: httpx.Response
) -> None:
    powens.overrides[("POST", "/auth/token")] = lambda _: answer
    with pytest.raises(ProviderError):
        await make_provider(http).get_payment("4242")
    assert not [r for r in powens.requests if r.method == "GET"]


async def test_the_token_request_is_retried_on_503(http: httpx.AsyncClient, powens: Powens) -> None:
    calls = [0]

    def flaky(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] == 1:
            return httpx.Response(503)
        powens.valid_tokens.add("second-try")
        return httpx.Response(200, json={"token": "second-try", "scope": "payments:admin"})

    powens.overrides[("POST", "/auth/token")] = flaky
    await make_provider(http).get_payment("4242")
    assert calls[0] == 2
    assert powens.requests[-1].headers["authorization"] == "Bearer second-try"


def test_the_secret_is_never_shown() -> None:
    transport = PowensTransport(
        httpx.AsyncClient(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET, base_url=BASE
    )
    assert CLIENT_SECRET not in repr(transport)


@pytest.mark.parametrize("base_url", ["ftp://x.test", "https://x.test/2.0?x=1", "x.test/2.0", "https://"])
def test_a_malformed_base_url_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError):
        PowensTransport(
            httpx.AsyncClient(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET, base_url=base_url
        )
