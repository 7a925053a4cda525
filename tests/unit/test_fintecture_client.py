"""The adapter's request building: amounts, the connect body, and §2 signatures checked independently.

Signatures are verified here from the contract text (rebuild the signing string, verify
PKCS1v15/SHA-256 with the public key), never with the adapter's own helpers. The only transport
used records what httpx would put on the wire and refuses the connection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from app.providers.base import Capabilities, Payer, ProviderError, ReturnRejected, SessionRequest
from app.providers.fintecture.client import CONNECT_PATH, FintectureProvider
from app.providers.fintecture.payloads import (
    connect_request,
    encode_json,
    encode_query,
    format_amount,
    parse_amount,
)
from app.providers.fintecture.signing import generate_key_pair_pem, load_private_key
from app.providers.fintecture.transport import FintectureTransport
from app.providers.transport import TransportOptions

APP_ID = "2dfdcf57-5b2f-4309-846f-913d0b2802cf"
NOW = datetime(2026, 11, 21, 4, 58, 55, tzinfo=UTC)


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair_pem()


@pytest.fixture(scope="module")
def private_key(key_pair: tuple[bytes, bytes]) -> rsa.RSAPrivateKey:
    return load_private_key(key_pair[0])


@pytest.fixture(scope="module")
def public_key(key_pair: tuple[bytes, bytes]) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(key_pair[1])
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def transport(
    http: httpx.AsyncClient,
    key: rsa.RSAPrivateKey | None,
    base_url: str = "https://api.example.test/prefix",
    **options: object,
) -> FintectureTransport:
    return FintectureTransport(
        http,
        app_id=APP_ID,
        app_secret="app-secret",
        base_url=base_url,
        private_key=key,
        options=TransportOptions(now=lambda: NOW, **options),  # type: ignore[arg-type]
    )


def provider(
    http: httpx.AsyncClient, key: rsa.RSAPrivateKey | None, *, production: bool = False, **options: object
) -> FintectureProvider:
    return FintectureProvider(transport(http, key, **options), production=production)


def session_request(**overrides: object) -> SessionRequest:
    fields: dict[str, object] = {
        "amount": Decimal("273.5"),
        "currency": "eur",
        "communication": "ORDER-42",
        "state": "st/ate+with&odd=chars é",
        "redirect_uri": "https://shop.example/callback?x=1&y=2",
        "origin_uri": "https://shop.example/cart",
        "payer": Payer(name="Julien Lefèbre", email="julien@example.com"),
        "expiry_seconds": 1800,
    }
    fields.update(overrides)
    return SessionRequest(**fields)  # type: ignore[arg-type]


def verify_per_contract(public_key: rsa.RSAPublicKey, request: httpx.Request) -> list[str]:
    """§2 from the outside: rebuild the signing string from what is on the wire; return the names."""
    params: dict[str, str] = dict(re.findall(r'(\w+)="([^"]*)"', request.headers["signature"]))
    assert params["keyId"] == APP_ID
    assert params["algorithm"] == "rsa-sha256"
    names = params["headers"].split(" ")
    values = {
        "(request-target)": f"{request.method.lower()} {request.url.raw_path.decode('ascii')}",
        "date": request.headers.get("date"),
        "digest": request.headers.get("digest"),
        "x-request-id": request.headers.get("x-request-id"),
    }
    signing_string = "\n".join(f"{name}: {values[name]}" for name in names)
    public_key.verify(
        base64.b64decode(params["signature"]), signing_string.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return list(names)


# --- Amounts and encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("273.5", "EUR", "273.50"),
        ("273", "EUR", "273.00"),
        ("0.01", "GBP", "0.01"),
        ("550.60", "PLN", "550.60"),
        ("12345678.9", "EUR", "12345678.90"),
    ],
)
def test_amounts_carry_exactly_the_currency_minor_digits(amount: str, currency: str, expected: str) -> None:
    assert format_amount(Decimal(amount), currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("1.005", "EUR"), ("0", "EUR"), ("-1", "EUR"), ("1.5", "JPY"), ("NaN", "EUR"), ("10", "XXX")],
)
def test_amounts_that_cannot_be_sent(amount: str, currency: str) -> None:
    with pytest.raises(ValueError):
        format_amount(Decimal(amount), currency)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("273", Decimal("273")), ("550.60", Decimal("550.60")), (" 1.5 ", Decimal("1.5")), (12, Decimal(12)),
     ("abc", None), (None, None), (True, None), ("Infinity", None), ({}, None)],
)  # fmt: skip
def test_provider_amounts_are_parsed_to_decimal(raw: object, expected: Decimal | None) -> None:
    assert parse_amount(raw) == expected


def test_query_values_are_fully_percent_encoded() -> None:
    assert encode_query([("state", "a b/c+d&e=f"), ("redirect_uri", "https://x.example/cb?q=1")]) == (
        "state=a%20b%2Fc%2Bd%26e%3Df&redirect_uri=https%3A%2F%2Fx.example%2Fcb%3Fq%3D1"
    )


def test_connect_request_shape() -> None:
    payer = Payer(
        name="Julien",
        email="j@example.com",
        phone="0974359353",
        company="My Business SARL",
        address={"street": "rue Marie Stuart", "number": 2, "zip": "75002", "city": "PARIS",
                 "country": "FR", "complement": "", "ignored": "x"},
        ip="203.0.113.7",
    )  # fmt: skip
    query, headers, body = connect_request(
        session_request(payer=payer, language="fr-FR", country="fr", bank_id="cmcifr2a")
    )
    assert query == [
        ("state", "st/ate+with&odd=chars é"),
        ("redirect_uri", "https://shop.example/callback?x=1&y=2"),
        ("origin_uri", "https://shop.example/cart"),
    ]
    assert headers == {
        "x-psu-type": "retail",
        "x-language": "fr",
        "x-country": "FR",
        "x-provider": "cmcifr2a",
    }
    assert body == {
        "meta": {
            "psu_name": "Julien",
            "psu_email": "j@example.com",
            "psu_phone": "0974359353",
            "psu_company": "My Business SARL",
            "psu_address": {
                "street": "rue Marie Stuart",
                "number": "2",
                "zip": "75002",
                "city": "PARIS",
                "country": "FR",
            },
            "psu_ip": "203.0.113.7",
            "expiry": 1800,
        },
        "data": {
            "type": "PIS",
            "attributes": {"amount": "273.50", "currency": "EUR", "communication": "ORDER-42"},
        },
    }


def test_connect_request_leaves_out_what_is_not_known() -> None:
    query, headers, body = connect_request(session_request(origin_uri="", language="??"))
    assert [name for name, _ in query] == ["state", "redirect_uri"]
    assert headers == {"x-psu-type": "retail"}
    assert set(body["meta"]) == {"psu_name", "psu_email", "expiry"}


@pytest.mark.parametrize(
    "overrides", [{"state": ""}, {"state": "x" * 513}, {"currency": "EURO"}, {"redirect_uri": ""}]
)
def test_connect_request_refuses_bad_input(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        connect_request(session_request(**overrides))


def test_json_body_is_compact_utf8() -> None:
    assert encode_json({"a": {"b": "é"}, "c": [1, 2]}) == '{"a":{"b":"é"},"c":[1,2]}'.encode()


# --- Signing, checked from the contract ----------------------------------------------------------


async def test_post_is_signed_over_the_wire_target_and_body(
    http: httpx.AsyncClient, private_key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey
) -> None:
    query, headers, body = connect_request(session_request())
    content = encode_json(body)
    request = transport(http, private_key).signed_request(
        "POST", CONNECT_PATH, query=query, body=content, headers=headers
    )
    # What httpx sends is what was signed: the raw target is not re-encoded.
    assert request.url.raw_path.decode() == (
        "/prefix/pis/v2/connect?state=st%2Fate%2Bwith%26odd%3Dchars%20%C3%A9"
        "&redirect_uri=https%3A%2F%2Fshop.example%2Fcallback%3Fx%3D1%26y%3D2"
        "&origin_uri=https%3A%2F%2Fshop.example%2Fcart"
    )
    assert verify_per_contract(public_key, request) == ["(request-target)", "date", "digest", "x-request-id"]
    assert request.content == content
    assert (
        request.headers["digest"] == "SHA-256=" + base64.b64encode(hashlib.sha256(content).digest()).decode()
    )
    assert request.headers["date"] == "Sat, 21 Nov 2026 04:58:55 GMT"
    assert parsedate_to_datetime(request.headers["date"]) == NOW
    assert uuid.UUID(request.headers["x-request-id"]).version == 4
    assert request.headers["x-psu-type"] == "retail"
    assert request.headers["content-length"] == str(len(content))
    # The server reads the same query values back.
    assert dict(request.url.params) == dict(query)


async def test_get_is_signed_without_a_digest(
    http: httpx.AsyncClient, private_key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey
) -> None:
    request = transport(http, private_key).signed_request("GET", "/pis/v2/payments/abc123")
    assert "digest" not in request.headers
    assert verify_per_contract(public_key, request) == ["(request-target)", "date", "x-request-id"]
    assert request.url.raw_path == b"/prefix/pis/v2/payments/abc123"


async def test_without_a_key_nothing_is_signed(http: httpx.AsyncClient) -> None:
    request = transport(http, None).signed_request("POST", "/x", body=b"{}")
    assert "signature" not in request.headers
    assert "digest" not in request.headers
    assert uuid.UUID(request.headers["x-request-id"])


class RefusingRecorder(httpx.AsyncBaseTransport):
    """Records exactly what httpx would send, then refuses the connection."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        raise httpx.ConnectError("connection refused", request=request)


async def test_token_call_is_signed_and_retried_only_while_unreachable(
    private_key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey
) -> None:
    recorder = RefusingRecorder()
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    async with httpx.AsyncClient(transport=recorder) as http:
        adapter = provider(http, private_key, max_retries=2, sleep=record_sleep, retry_base_delay=0.2)
        with pytest.raises(ProviderError) as info:
            await adapter.create_session(session_request())
    assert info.value.code == "network_error"
    assert info.value.retryable is True
    # Never reached the server: safe to try again, three attempts in all, backing off.
    assert len(recorder.requests) == 3
    assert 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.4
    token_request = recorder.requests[0]
    assert token_request.method == "POST"
    assert token_request.url.raw_path == b"/prefix/oauth/accesstoken"
    assert token_request.content == f"grant_type=client_credentials&app_id={APP_ID}&scope=PIS".encode()
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (
        token_request.headers["authorization"]
        == "Basic " + base64.b64encode(f"{APP_ID}:app-secret".encode()).decode()
    )
    assert verify_per_contract(public_key, token_request) == [
        "(request-target)", "date", "digest", "x-request-id"
    ]  # fmt: skip
    # Each attempt is signed afresh.
    assert len({r.headers["x-request-id"] for r in recorder.requests}) == 3


# --- Construction and keys -----------------------------------------------------------------------


async def test_production_needs_a_key_and_https(
    http: httpx.AsyncClient, private_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(ValueError, match="private key"):
        provider(http, None, production=True)
    with pytest.raises(ValueError, match="https"):
        FintectureProvider(transport(http, private_key, base_url="http://api.example.test"), production=True)
    assert FintectureProvider(transport(http, private_key), production=True).name == "fintecture"


@pytest.mark.parametrize("base_url", ["ftp://api.example.test", "https://", "https://api.example.test/?x=1"])
async def test_base_url_must_be_a_plain_http_url(http: httpx.AsyncClient, base_url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        transport(http, None, base_url=base_url)


async def test_repr_shows_no_secret(http: httpx.AsyncClient, private_key: rsa.RSAPrivateKey) -> None:
    adapter = provider(http, private_key)
    for text in (repr(adapter), repr(adapter.transport)):
        assert "app-secret" not in text and "PRIVATE" not in text
        assert base64.b64encode(f"{APP_ID}:app-secret".encode()).decode() not in text
        assert APP_ID in text


def test_key_pair_pems(key_pair: tuple[bytes, bytes], public_key: rsa.RSAPublicKey) -> None:
    private_pem, public_pem = key_pair
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    key = load_private_key(private_pem.decode())
    assert key.public_key().public_numbers() == public_key.public_numbers()


def test_load_private_key_accepts_pkcs1(private_key: rsa.RSAPrivateKey) -> None:
    pkcs1 = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert load_private_key(pkcs1).private_numbers() == private_key.private_numbers()


def test_load_private_key_refuses_what_it_cannot_use() -> None:
    with pytest.raises(ValueError, match="not a readable"):
        load_private_key("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="RSA"):
        load_private_key(ec_pem)


def test_request_body_round_trips() -> None:
    _, _, body = connect_request(session_request())
    assert json.loads(encode_json(body)) == body


# --- The payer's return (§7) ---------------------------------------------------------------------


async def test_return_names_the_state_and_session(http: httpx.AsyncClient) -> None:
    query = {
        "session_id": "b2bca2bcd3b64a32a7da0766df59a7d2",
        "status": "payment_created",  # never trusted: the provider is asked
        "provider": "ftecfr",
        "customer_id": "1ef74051a77673de120820fb370dc382",
        "state": "st/ate+with&odd=chars é",
    }
    hint = provider(http, None).parse_return(query)
    assert hint.state == "st/ate+with&odd=chars é"
    assert hint.provider_session_id == "b2bca2bcd3b64a32a7da0766df59a7d2"
    assert hint.error is None


async def test_return_at_the_length_limits_is_accepted(http: httpx.AsyncClient) -> None:
    hint = provider(http, None).parse_return({"state": "s" * 512, "session_id": "a" * 128})
    assert (len(hint.state or ""), len(hint.provider_session_id or "")) == (512, 128)


@pytest.mark.parametrize(
    "query",
    [
        {"session_id": "b2bca2bcd3b64a32a7da0766df59a7d2"},
        {"state": "", "session_id": "b2bca2bcd3b64a32a7da0766df59a7d2"},
        {"state": "ord123"},
        {"state": "ord123", "session_id": ""},
        {},
        {"state": "s" * 513, "session_id": "b2bca2bcd3b64a32a7da0766df59a7d2"},
        {"state": "ord123", "session_id": "a" * 129},
    ],
    ids=["no-state", "empty-state", "no-session", "empty-session", "nothing", "long-state", "long-session"],
)
async def test_return_without_what_fintecture_sends_back_is_rejected(
    http: httpx.AsyncClient, query: dict[str, str]
) -> None:
    with pytest.raises(ReturnRejected, match="the payment link is incomplete"):
        provider(http, None).parse_return(query)


async def test_capabilities(http: httpx.AsyncClient) -> None:
    assert provider(http, None).capabilities == Capabilities(
        pay_in=True, refund=True, payout=True, cancel=True
    )
