"""Webhook verification: deliveries built here from the contract text (§3), then tampered with.

The builder below uses `cryptography` directly, not the adapter's helpers, so the test checks the
adapter against the documented scheme rather than against itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.providers.base import WebhookHint, WebhookRejected, WebhookRequest
from app.providers.fintecture.client import FintectureProvider
from app.providers.fintecture.transport import FintectureTransport
from app.providers.fintecture.webhooks import _parse_http_date, form_fields, verify_webhook
from tests.support.fintecture import build_delivery as contract_delivery
from tests.support.fintecture import oaep_sha1

APP_ID = "2dfdcf57-5b2f-4309-846f-913d0b2802cf"
NOW = datetime(2026, 11, 21, 4, 58, 45, tzinfo=UTC)
FORM_BODY = (
    b"session_id=b2bca2bcd3b64a32a7da0766df59a7d2&status=payment_created"
    b"&customer_id=1ef74051a77673de120820fb370dc382&provider=ftecfr&state=ord123&type=PayByBank"
    b"&transfer_state=completed&amount=273.00&currency=EUR&event=payment_session.status.payment_created"
)


@pytest.fixture(scope="module")
def merchant_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def build_delivery(
    public_key: rsa.RSAPublicKey,
    body: bytes = FORM_BODY,
    *,
    date: datetime = NOW,
    request_id: str = "91ef93bd-1f4c-4f8e-9a51-2f1f8c4d9b11",
    key_id: str = APP_ID,
    **options: Any,
) -> dict[str, str]:
    """The documented delivery (tests/support/fintecture.py), with this module's defaults."""
    return contract_delivery(public_key, body, date=date, request_id=request_id, key_id=key_id, **options)


def verify(
    key: rsa.RSAPrivateKey | None, headers: dict[str, str], body: bytes = FORM_BODY, now: datetime = NOW
) -> WebhookHint:
    return verify_webhook(
        WebhookRequest("POST", "/webhook", headers, body),
        private_key=key,
        app_id=APP_ID,
        now=now,
        tolerance_seconds=300,
    )


def rejected(
    key: rsa.RSAPrivateKey | None, headers: dict[str, str], body: bytes = FORM_BODY, now: datetime = NOW
) -> str:
    with pytest.raises(WebhookRejected) as info:
        verify(key, headers, body, now)
    return info.value.reason


# --- Accepted ----------------------------------------------------------------------------------


def test_a_documented_form_delivery_is_accepted(merchant_key: rsa.RSAPrivateKey) -> None:
    hint = verify(merchant_key, build_delivery(merchant_key.public_key()))
    assert hint.delivery_id == "91ef93bd-1f4c-4f8e-9a51-2f1f8c4d9b11"
    assert hint.provider_session_id == "b2bca2bcd3b64a32a7da0766df59a7d2"
    assert hint.event_type == "payment_session.status.payment_created"
    assert hint.content_type == "application/x-www-form-urlencoded"
    assert hint.payload["state"] == "ord123"
    assert hint.payload["amount"] == "273.00"


def test_a_json_delivery_is_accepted(merchant_key: rsa.RSAPrivateKey) -> None:
    body = json.dumps({"session_id": "abc123", "status": "payment_created", "event": "x"}).encode()
    headers = build_delivery(merchant_key.public_key(), body, content_type="application/json; charset=utf-8")
    hint = verify(merchant_key, headers, body)
    assert hint.provider_session_id == "abc123"
    assert hint.payload == {"session_id": "abc123", "status": "payment_created", "event": "x"}


def test_digest_is_over_the_raw_bytes_whatever_their_encoding(merchant_key: rsa.RSAPrivateKey) -> None:
    # %20 and an unencoded slash: a verifier that re-encodes the parsed form would fail here (§12.2).
    body = b"session_id=abc&state=a%20b/c&status=payment_created"
    hint = verify(merchant_key, build_delivery(merchant_key.public_key(), body), body)
    assert hint.payload["state"] == "a b/c"


def test_header_names_are_case_insensitive_and_params_in_any_order(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    params = dict(part.split("=", 1) for part in headers["Signature"].split(","))
    reordered = ", ".join(f"{k} = {params[k]}" for k in ("signature", "headers", "algorithm", "keyId"))
    lowered = {name.upper() if name != "Signature" else "signature": value for name, value in headers.items()}
    lowered["signature"] = reordered
    assert verify(merchant_key, lowered).provider_session_id == "b2bca2bcd3b64a32a7da0766df59a7d2"


def test_plaintext_follows_the_listed_header_order(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key(), signed_names=("x-request-id", "date", "digest"))
    assert verify(merchant_key, headers).delivery_id


@pytest.mark.parametrize("offset", [-300, 300])
def test_dates_at_the_edge_of_the_window_are_accepted(merchant_key: rsa.RSAPrivateKey, offset: int) -> None:
    headers = build_delivery(merchant_key.public_key(), date=NOW + timedelta(seconds=offset))
    assert verify(merchant_key, headers).delivery_id


@pytest.mark.parametrize("zone", ["+0000", "-0000", "GMT"])
def test_rfc2822_zone_spellings_are_read_as_utc(merchant_key: rsa.RSAPrivateKey, zone: str) -> None:
    headers = build_delivery(merchant_key.public_key())
    date = headers["Date"].replace("GMT", zone)
    # Re-sign with that spelling (it is part of the plaintext).
    body_digest = headers["Digest"]
    plaintext = f"date: {date}\ndigest: {body_digest}\nx-request-id: {headers['X-Request-ID']}".encode()
    ciphertext = base64.b64encode(merchant_key.public_key().encrypt(plaintext, oaep_sha1())).decode()
    headers["Date"] = date
    headers["Signature"] = (
        f'keyId="{APP_ID}",algorithm="rsa-sha256",headers="date digest x-request-id",signature="{ciphertext}"'
    )
    assert verify(merchant_key, headers).delivery_id


def test_the_date_reads_as_the_general_rfc2822_parser_reads_it() -> None:
    """The common spelling has a fast reading of its own; every date reads as the general parser
    reads it, and what that parser refuses stays refused."""
    moment = datetime(1970, 1, 1, tzinfo=UTC)
    while moment.year < 2100:
        spelled = format_datetime(moment, usegmt=True)
        assert _parse_http_date(spelled) == parsedate_to_datetime(spelled) == moment
        moment += timedelta(days=7, hours=5, minutes=13, seconds=31)
    for other in (
        "Thu, 3 Dec 2026 08:50:49 GMT",
        "3 Dec 2026 08:50:49 +0100",
        "Thu, 03 Dec 2026 08:50:49 -0000",
        "Thu, 03 Dec 0026 08:50:49 GMT",  # the general parser's year 2026
    ):
        general = parsedate_to_datetime(other)
        assert _parse_http_date(other) == (general if general.tzinfo else general.replace(tzinfo=UTC))
    for impossible in (
        "Thu, 31 Feb 2026 08:50:49 GMT",
        "Thu, 03 Dec 2026 24:50:49 GMT",
        "Thu, 03 Dec 2026 GMT",
    ):
        with pytest.raises(WebhookRejected, match="not an RFC 2822 date"):
            _parse_http_date(impossible)


@pytest.mark.parametrize(
    "text",
    [
        "session_id=b2bca2bcd3b64a32a7da0766df59a7d2&status=payment_created&received_amount=19.99",
        "a=1+2&b=%2B%20&c=caf%C3%A9&d=%E2%82%AC+&e=",
        "=x&y=&a=b=c&%3D=%26",
        "a=%zz&b=%&c=%4&d=%FF%FE&e=%C3",  # malformed escapes become what unquote makes of them
        "name+with+spaces=value%0Awith%0Dcontrols&t=%00",
        "x=" + "%41" * 500 + "&" + "&".join(f"k{i}=v{i}" for i in range(200)),
    ],
)
def test_a_form_body_reads_as_parse_qsl_reads_it(text: str) -> None:
    assert form_fields(text) == parse_qsl(text, keep_blank_values=True, strict_parsing=True)


@pytest.mark.parametrize("text", ["a", "a=1&", "&a=1", "a=1&&b=2", "a=1&b", "=&&"])
def test_a_form_body_parse_qsl_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    with pytest.raises(ValueError):
        form_fields(text)


def test_an_empty_form_body_has_no_fields() -> None:
    assert form_fields("") == parse_qsl("", keep_blank_values=True) == []


async def test_the_provider_method_uses_its_key_and_settings(merchant_key: rsa.RSAPrivateKey) -> None:
    async with httpx.AsyncClient() as http:
        transport = FintectureTransport(
            http, app_id=APP_ID, app_secret="s", base_url="http://127.0.0.1:9", private_key=merchant_key
        )
        provider = FintectureProvider(transport, webhook_tolerance_seconds=60)
        request = WebhookRequest(
            "POST", "/webhooks/fintecture", build_delivery(merchant_key.public_key()), FORM_BODY
        )
        hint = provider.verify_webhook(request, NOW)
        assert hint.provider_session_id == "b2bca2bcd3b64a32a7da0766df59a7d2"
        assert provider.verify_webhook(request, NOW + timedelta(seconds=60)).delivery_id
        with pytest.raises(WebhookRejected, match="outside the accepted window"):
            provider.verify_webhook(request, NOW + timedelta(seconds=61))
        with pytest.raises(WebhookRejected, match="outside the accepted window"):
            provider.verify_webhook(request, NOW + timedelta(hours=1))


def test_method_and_path_are_not_part_of_what_fintecture_signs(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    for method, path in (("POST", "/webhook"), ("PUT", "/elsewhere?x=1")):
        request = WebhookRequest(method, path, headers, FORM_BODY)
        hint = verify_webhook(
            request, private_key=merchant_key, app_id=APP_ID, now=NOW, tolerance_seconds=300
        )
        assert hint.delivery_id == "91ef93bd-1f4c-4f8e-9a51-2f1f8c4d9b11"


# --- Rejected ----------------------------------------------------------------------------------


def test_body_byte_changed(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    tampered = FORM_BODY.replace(b"payment_created", b"payment_crEated", 1)
    assert rejected(merchant_key, headers, tampered) == "Digest header does not match the body"


def test_digest_header_changed(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    headers["Digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    assert rejected(merchant_key, headers) == "signed digest does not match the digest header"


def test_digest_header_and_body_changed_together(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    body = FORM_BODY + b"&extra=1"
    headers["Digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert rejected(merchant_key, headers, body) == "signed digest does not match the digest header"


def test_signed_digest_that_does_not_match_the_body(merchant_key: rsa.RSAPrivateKey) -> None:
    # Consistent headers and signature, but over a different body.
    headers = build_delivery(merchant_key.public_key(), b"session_id=other")
    assert rejected(merchant_key, headers) == "Digest header does not match the body"


@pytest.mark.parametrize("offset", [-301, 301])
def test_date_outside_the_window(merchant_key: rsa.RSAPrivateKey, offset: int) -> None:
    headers = build_delivery(merchant_key.public_key(), date=NOW + timedelta(seconds=offset))
    assert rejected(merchant_key, headers) == "Date is outside the accepted window"


def test_date_header_changed_after_signing(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    headers["Date"] = format_datetime(NOW + timedelta(seconds=1), usegmt=True)
    assert rejected(merchant_key, headers) == "signed date does not match the date header"


def test_unparseable_date(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    plaintext = f"date: yesterday\ndigest: {headers['Digest']}\nx-request-id: {headers['X-Request-ID']}"
    ciphertext = merchant_key.public_key().encrypt(plaintext.encode(), oaep_sha1())
    headers["Date"] = "yesterday"
    signature = base64.b64encode(ciphertext).decode()
    headers["Signature"] = f'keyId="{APP_ID}",headers="date digest x-request-id",signature="{signature}"'
    assert rejected(merchant_key, headers) == "Date header is not an RFC 2822 date"


def test_request_id_header_changed(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    headers["X-Request-ID"] = "00000000-0000-4000-8000-000000000000"
    assert rejected(merchant_key, headers) == "signed x-request-id does not match the x-request-id header"


def test_signature_made_for_another_key(
    merchant_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    headers = build_delivery(other_key.public_key())
    assert rejected(merchant_key, headers) == "signature does not decrypt with the merchant key"


def test_signature_with_oaep_sha256_instead_of_sha1(merchant_key: rsa.RSAPrivateKey) -> None:
    oaep256 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    headers = build_delivery(merchant_key.public_key(), oaep=oaep256)
    assert rejected(merchant_key, headers) == "signature does not decrypt with the merchant key"


@pytest.mark.parametrize("name", ["Signature", "Digest", "Date", "X-Request-ID"])
def test_each_required_header_missing(merchant_key: rsa.RSAPrivateKey, name: str) -> None:
    headers = build_delivery(merchant_key.public_key())
    del headers[name]
    assert rejected(merchant_key, headers) == f"missing {name.lower()} header"


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("not base64 at all!", "signature is not base64"),
        (base64.b64encode(b"\x01" * 256).decode(), "signature does not decrypt with the merchant key"),
        (base64.b64encode(b"short").decode(), "signature has the wrong length for the merchant key"),
        ("", "Signature header has no signature"),
    ],
)
def test_garbage_signature(merchant_key: rsa.RSAPrivateKey, signature: str, reason: str) -> None:
    headers = build_delivery(merchant_key.public_key())
    headers["Signature"] = f'keyId="{APP_ID}",algorithm="rsa-sha256",headers="date digest x-request-id",' + (
        f'signature="{signature}"'
    )
    assert rejected(merchant_key, headers) == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("complete nonsense", "malformed Signature header"),
        ('keyId="a" keyId="b"', "malformed Signature header"),
        (f'keyId="{APP_ID}",keyId="{APP_ID}",signature="x"', "repeated Signature parameter keyid"),
    ],
)
def test_unparseable_signature_header(merchant_key: rsa.RSAPrivateKey, value: str, reason: str) -> None:
    headers = build_delivery(merchant_key.public_key())
    headers["Signature"] = value
    assert rejected(merchant_key, headers) == reason


def test_key_id_mismatch(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key(), key_id="someone-else")
    assert rejected(merchant_key, headers) == "Signature keyId is not this application"


def test_key_id_missing(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    headers["Signature"] = headers["Signature"].replace(f'keyId="{APP_ID}",', "")
    assert "keyId" not in headers["Signature"]
    assert rejected(merchant_key, headers) == "Signature keyId is not this application"


def test_signature_that_does_not_cover_the_digest(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key(), signed_names=("date", "x-request-id"))
    assert rejected(merchant_key, headers) == "Signature does not cover date, digest and x-request-id"


def test_a_signed_request_target_is_refused(merchant_key: rsa.RSAPrivateKey) -> None:
    # Fintecture never signs the method and path of a webhook; a delivery claiming to is not theirs.
    headers = build_delivery(merchant_key.public_key())
    headers["Signature"] = headers["Signature"].replace(
        'headers="date digest x-request-id"', 'headers="(request-target) date digest x-request-id"'
    )
    assert rejected(merchant_key, headers) == "unsupported signed pseudo-header (request-target)"


def test_listed_order_differs_from_the_encrypted_order(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    headers["Signature"] = headers["Signature"].replace(
        'headers="date digest x-request-id"', 'headers="digest date x-request-id"'
    )
    assert rejected(merchant_key, headers) == "signed digest does not match the digest header"


def test_unsupported_algorithm_label(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    headers["Signature"] = headers["Signature"].replace('algorithm="rsa-sha256"', 'algorithm="hmac-sha256"')
    assert rejected(merchant_key, headers) == "unsupported Signature algorithm"


def test_no_private_key_configured(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    assert rejected(None, headers) == "webhook verification key not configured"


def test_repeated_form_field_is_refused(merchant_key: rsa.RSAPrivateKey) -> None:
    body = b"session_id=a&session_id=b"
    assert rejected(merchant_key, build_delivery(merchant_key.public_key(), body), body) == (
        "repeated form field session_id"
    )


def test_json_body_that_is_not_an_object(merchant_key: rsa.RSAPrivateKey) -> None:
    body = b"[1, 2]"
    headers = build_delivery(merchant_key.public_key(), body, content_type="application/json")
    assert rejected(merchant_key, headers, body) == "JSON body is not an object"


def test_reasons_never_carry_the_body(merchant_key: rsa.RSAPrivateKey) -> None:
    headers = build_delivery(merchant_key.public_key())
    for body in (FORM_BODY + b"x", b"secret=1"):
        assert b"session_id" not in rejected(merchant_key, headers, body).encode()
