"""Powens webhook verification (contracts/powens.md §5): a worked example, then tampering.

The expected signature below was computed once, by hand, from the contract's formula with the
standard library (`base64(hmac_sha256(secret, "POST." + path + "." + date + "." + body))`) and is
written here as a literal; other deliveries are signed in this file with `hmac` directly, never
with the adapter's helpers.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.providers.base import WebhookRejected, WebhookRequest
from app.providers.powens.client import PowensProvider
from app.providers.powens.transport import PowensTransport
from app.providers.powens.webhooks import MAX_DECOMPRESSED_BYTES, verify_webhook

SECRET = b"whsec-9f8e7d6c5b4a39281706"
PATH = "/webhooks/powens"
DATE = "2026-11-21T04:58:45.123456Z"
NOW = datetime(2026, 11, 21, 4, 58, 45, 123456, tzinfo=UTC)
BODY = (
    b'{"id":4242,"state":"done","error_code":null,"instructions":[{"label":"ORD-7Q2K","amount":50.90,'
    b'"currency":{"id":"EUR","precision":2}}],"id_webhook_data":918273}'
)
# base64(HMAC-SHA256(SECRET, b"POST./webhooks/powens.2026-11-21T04:58:45.123456Z." + BODY))
EXPECTED_SIGNATURE = "irohJzA5xyUCnGo2JtRlVxMPJgJW/aveiJpHGYFT1r0="
TOLERANCE = 600


def sign(
    body: bytes, *, date: str = DATE, path: str = PATH, secret: bytes = SECRET, method: str = "POST"
) -> str:
    message = f"{method}.{path}.{date}.".encode() + body
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


def delivery(
    body: bytes = BODY,
    *,
    signature: str | None = EXPECTED_SIGNATURE,
    date: str | None = DATE,
    path: str = PATH,
    extra: dict[str, str] | None = None,
) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["BI-Signature"] = signature
    if date is not None:
        headers["BI-Signature-Date"] = date
    headers.update(extra or {})
    return WebhookRequest(method="POST", path=path, headers=headers, raw_body=body)


def verify(request: WebhookRequest, *, now: datetime = NOW, secret: bytes | None = SECRET) -> Any:
    return verify_webhook(request, secret=secret, now=now, tolerance_seconds=TOLERANCE)


def rejected(request: WebhookRequest, match: str, **kwargs: Any) -> None:
    with pytest.raises(WebhookRejected, match=match):
        verify(request, **kwargs)


def test_the_worked_example_verifies() -> None:
    assert sign(BODY) == EXPECTED_SIGNATURE  # the helper above agrees with the literal
    hint = verify(delivery())
    assert hint.delivery_id == "918273"
    assert hint.provider_session_id == "4242"
    assert hint.event_type == "PAYMENT_STATE_UPDATED"
    assert hint.content_type == "application/json"
    assert hint.payload["state"] == "done"
    assert hint.snapshot is None  # a hint: the payment is read from the API before anything applies


def test_header_names_are_case_insensitive() -> None:
    request = WebhookRequest(
        method="POST",
        path=PATH,
        headers={"bi-signature": EXPECTED_SIGNATURE, "BI-SIGNATURE-DATE": DATE},
        raw_body=BODY,
    )
    assert verify(request).delivery_id == "918273"


def test_a_tampered_body_byte_is_refused() -> None:
    tampered = BODY.replace(b'"state":"done"', b'"state":"done "')
    rejected(delivery(tampered), "does not match")
    flipped = bytearray(BODY)
    flipped[10] ^= 0x01
    rejected(delivery(bytes(flipped)), "does not match")


def test_a_reserialised_body_is_refused() -> None:
    reserialised = json.dumps(json.loads(BODY)).encode()  # same JSON, other bytes
    rejected(delivery(reserialised), "does not match")


def test_another_path_is_refused() -> None:
    rejected(delivery(path="/webhook"), "does not match")
    rejected(delivery(path="/webhooks/powens/"), "does not match")


def test_the_method_is_signed() -> None:
    request = WebhookRequest(method="PUT", path=PATH, headers=dict(delivery().headers), raw_body=BODY)
    rejected(request, "does not match")


def test_a_signed_date_outside_the_window_is_refused_both_ways() -> None:
    for shift in (timedelta(seconds=TOLERANCE + 1), -timedelta(seconds=TOLERANCE + 1)):
        moment = (NOW + shift).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rejected(delivery(signature=sign(BODY, date=moment), date=moment), "outside the accepted window")
    for shift in (timedelta(seconds=TOLERANCE - 1), -timedelta(seconds=TOLERANCE - 1)):
        moment = (NOW + shift).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert verify(delivery(signature=sign(BODY, date=moment), date=moment)).delivery_id == "918273"


def test_the_date_header_is_signed() -> None:
    # A fresh date on an old signature: the HMAC no longer matches.
    later = "2026-11-21T04:59:45.123456Z"
    rejected(delivery(date=later), "does not match")


def test_a_date_with_an_offset_is_read_as_that_instant() -> None:
    date = "2026-11-21T05:58:45.123456+01:00"
    assert verify(delivery(signature=sign(BODY, date=date), date=date)).provider_session_id == "4242"


def test_a_wrong_secret_is_refused() -> None:
    rejected(delivery(), "does not match", secret=b"another-secret-entirely")
    rejected(delivery(signature=sign(BODY, secret=b"another-secret-entirely")), "does not match")


def test_no_secret_configured_refuses_everything() -> None:
    rejected(delivery(), "secret not configured", secret=None)
    rejected(delivery(), "secret not configured", secret=b"")


def test_a_missing_signature_is_refused() -> None:
    rejected(delivery(signature=None), "missing BI-Signature header")
    rejected(delivery(signature="  "), "missing BI-Signature header")


def test_a_missing_date_is_refused() -> None:
    rejected(delivery(date=None), "missing BI-Signature-Date header")


@pytest.mark.parametrize(
    "date",
    [
        "Sat, 21 Nov 2026 04:58:45 GMT",
        "yesterday",
        "2026-11-21",
        "2026-13-21T04:58:45Z",
        "2026-11-21T04:58:45.1234567Z",
        "2026-11-21T04:58:45Z" + "0" * 80,
    ],
)
def test_a_garbage_date_is_refused(date: str) -> None:
    rejected(delivery(signature=sign(BODY, date=date), date=date), "not an ISO-8601 date")


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("not base64 at all!", "not base64"),
        (EXPECTED_SIGNATURE.rstrip("="), "not base64"),  # padding is required
        (base64.b64encode(b"short").decode(), "not an HMAC-SHA256"),
        (EXPECTED_SIGNATURE.replace("+", "-").replace("/", "_"), "not base64"),  # urlsafe alphabet
        ("A" * 500, "too long"),
    ],
)
def test_a_garbage_signature_is_refused(signature: str, reason: str) -> None:
    rejected(delivery(signature=signature), reason)


def test_a_hex_signature_is_refused() -> None:
    hex_digest = hmac.new(SECRET, f"POST.{PATH}.{DATE}.".encode() + BODY, hashlib.sha256).hexdigest()
    rejected(delivery(signature=hex_digest), "BI-Signature")


def test_duplicate_header_spellings_are_refused() -> None:
    request = WebhookRequest(
        method="POST",
        path=PATH,
        headers={
            "BI-Signature": EXPECTED_SIGNATURE,
            "bi-signature": EXPECTED_SIGNATURE,
            "BI-Signature-Date": DATE,
        },
        raw_body=BODY,
    )
    rejected(request, "duplicate bi-signature header")


def test_a_gzip_body_is_verified_over_the_json_it_carries() -> None:
    # The simulator's reading: the HMAC covers the JSON payload before compression.
    compressed = gzip.compress(BODY, mtime=0)
    hint = verify(delivery(compressed, signature=EXPECTED_SIGNATURE, extra={"Content-Encoding": "gzip"}))
    assert hint.delivery_id == "918273"
    assert hint.payload["id"] == 4242
    # Signed over the compressed bytes instead: not the payload.
    rejected(
        delivery(compressed, signature=sign(compressed), extra={"Content-Encoding": "gzip"}), "does not match"
    )
    # The same JSON compressed differently still verifies: what is signed is the payload.
    recompressed = gzip.compress(BODY, compresslevel=1, mtime=12345)
    assert recompressed != compressed
    assert verify(delivery(recompressed, extra={"Content-Encoding": "gzip"})).delivery_id == "918273"


def test_a_gzip_body_with_a_tampered_payload_is_refused() -> None:
    tampered = gzip.compress(BODY.replace(b'"state":"done"', b'"state":"dona"'), mtime=0)
    rejected(delivery(tampered, extra={"Content-Encoding": "gzip"}), "does not match")


def test_an_uncompressed_body_announced_as_gzip_is_refused() -> None:
    rejected(delivery(BODY, extra={"Content-Encoding": "gzip"}), "not valid gzip")


def test_a_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(b"{" + b" " * (MAX_DECOMPRESSED_BYTES * 8) + b"}", mtime=0)
    assert len(bomb) < 64 * 1024  # small on the wire
    rejected(delivery(bomb, signature=EXPECTED_SIGNATURE, extra={"Content-Encoding": "gzip"}), "too large")
    # Just under the cap is fine (and then simply not a payment).
    padded = b'{"id":4242,"id_webhook_data":1' + b" " * (MAX_DECOMPRESSED_BYTES - 40) + b"}"
    assert len(padded) <= MAX_DECOMPRESSED_BYTES
    compressed = gzip.compress(padded, mtime=0)
    assert (
        verify(delivery(compressed, signature=sign(padded), extra={"Content-Encoding": "gzip"})).delivery_id
        == "1"
    )


def test_broken_gzip_is_refused() -> None:
    compressed = gzip.compress(BODY, mtime=0)
    for body, reason in (
        (BODY, "not valid gzip"),
        (compressed[:-12], "truncated"),
        (compressed + b"trailing", "trailing data"),
    ):
        rejected(delivery(body, signature=sign(body), extra={"Content-Encoding": "gzip"}), reason)


def test_an_unknown_content_encoding_is_refused() -> None:
    rejected(delivery(extra={"Content-Encoding": "br"}), "unsupported Content-Encoding")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "not an object"),
        (b'"done"', "not an object"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"id": "4242", "id_webhook_data": 1}', "no integer payment id"),
        (b'{"id": 42.0, "id_webhook_data": 1}', "no integer payment id"),
        (b'{"id": true, "id_webhook_data": 1}', "no integer payment id"),
        (b'{"id": 0, "id_webhook_data": 1}', "no integer payment id"),
        (b'{"id_webhook_data": 1}', "no integer payment id"),
        (b'{"id": 4242}', "no integer id_webhook_data"),
        (b'{"id": 4242, "id_webhook_data": "918273"}', "no integer id_webhook_data"),
        (b'{"id": 4242, "id_webhook_data": false}', "no integer id_webhook_data"),
    ],
)
def test_bodies_that_are_not_a_payment_are_refused(body: bytes, reason: str) -> None:
    rejected(delivery(body, signature=sign(body)), reason)


async def test_the_adapter_uses_its_secret_and_tolerance() -> None:
    async with httpx.AsyncClient() as http:
        transport = PowensTransport(http, client_id="c", client_secret="s", base_url="https://x.test/2.0")
        provider = PowensProvider(
            transport,
            domain="shop-sandbox",
            webview_base_url="https://webview.test",
            beneficiary_iban="FR7630006000011234567890189",
            beneficiary_name="ACME",
            callback_url="https://pay.test/callback",
            webhook_secret=SECRET,
            webhook_tolerance_seconds=30,
        )
        assert provider.verify_webhook(delivery(), NOW).delivery_id == "918273"
        with pytest.raises(WebhookRejected, match="outside the accepted window"):
            provider.verify_webhook(delivery(), NOW + timedelta(seconds=31))
