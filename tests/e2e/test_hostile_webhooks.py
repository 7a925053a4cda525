"""Webhooks that pass authentication yet carry content the inbox cannot store, against the live
service: each gets a 400 `invalid_webhook` in the error shape and writes nothing.

Anyone holding the merchant's public key can produce a Fintecture signature (it is RSA encryption,
contracts/fintecture.md §3), so these deliveries are signed exactly as the provider signs. Powens
deliveries are signed with the webhook secret, as a leaked secret would allow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import Stack
from tests.e2e.test_powens import payment_body, post_powens_webhook, signed_headers
from tests.e2e.test_webhook_security import form_body, post_webhook, signed
from tests.support.fintecture import public_key_from_pem


@pytest.fixture
def merchant_public(merchant_keys: tuple[str, str]) -> rsa.RSAPublicKey:
    return public_key_from_pem(merchant_keys[1])


def assert_refused(response: httpx.Response, status: int = 400, code: str = "invalid_webhook") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    return str(error["message"])


def _json(payload: str) -> tuple[bytes, dict[str, Any]]:
    return payload.encode(), {"content_type": "application/json"}


def _session_json(session_id: str, **extra: str) -> str:
    fields = {
        "session_id": session_id,
        "status": "payment_created",
        "event": "payment_session.status",
        **extra,
    }
    return json.dumps(fields)


# Each builds (body, options for the signature) from the session's provider id.
FINTECTURE_HOSTILE: dict[str, tuple[Callable[[str], tuple[bytes, dict[str, Any]]], str]] = {
    "session_id over 128 characters": (
        lambda sid: (form_body("s" * 129), {}),
        "payment id is longer than 128",
    ),
    "event over 128 characters": (
        lambda sid: (form_body(sid).replace(b"event=payment_session", b"event=" + b"e" * 129, 1), {}),
        "event type is longer than 128",
    ),
    "Content-Type over 128 characters": (
        lambda sid: (form_body(sid), {"content_type": "application/x-www-form-urlencoded; x=" + "a" * 100}),
        "Content-Type is longer than 128",
    ),
    "NUL in a form field": (
        lambda sid: (f"session_id={sid}&status=payment_created&note=a%00b".encode(), {}),
        "form body contains NUL",
    ),
    "NUL in the session id": (
        lambda sid: (f"session_id={quote(sid)}%00&status=x".encode(), {}),
        "form body contains NUL",
    ),
    "\\u0000 in JSON": (lambda sid: _json(_session_json(sid, note="a\u0000b")), "NUL"),
    "NaN in JSON": (lambda sid: _json(_session_json(sid)[:-1] + ', "amount": NaN}'), "NaN"),
    "Infinity by overflow in JSON": (
        lambda sid: _json(_session_json(sid)[:-1] + ', "amount": 1e400}'),
        "out of range",
    ),
    "lone surrogate in JSON": (
        lambda sid: _json(_session_json(sid)[:-1] + ', "note": "\\ud800"}'),
        "surrogate",
    ),
    "JSON nested 20,000 deep": (
        lambda sid: _json(_session_json(sid)[:-1] + ', "deep": ' + "[" * 20_000 + "]" * 20_000 + "}"),
        "nested too deeply",
    ),
    "JSON nested 100 deep": (
        lambda sid: _json(_session_json(sid)[:-1] + ', "deep": ' + "[" * 100 + "]" * 100 + "}"),
        "nested deeper than 32",
    ),
}


@pytest.mark.parametrize("variant", list(FINTECTURE_HOSTILE))
async def test_signed_fintecture_webhook_with_unstorable_content_is_400_and_writes_nothing(
    stack: Stack, merchant_public: rsa.RSAPublicKey, variant: str
) -> None:
    order, session = await stack.paying_order()
    build, reason = FINTECTURE_HOSTILE[variant]
    body, options = build(session["provider_session_id"])
    before = await stack.table_counts()

    response = await post_webhook(stack, body, signed(merchant_public, body, **options))
    assert reason in assert_refused(response)
    await stack.service.state.workers.drain_inbox()
    assert await stack.table_counts() == before
    assert await stack.order_status(order["id"]) == "awaiting_payment"


async def test_an_authentic_json_delivery_is_still_stored(
    stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    _, session = await stack.paying_order()
    body = _session_json(session["provider_session_id"], note="Zoë 😀\n").encode()
    response = await post_webhook(stack, body, signed(merchant_public, body, content_type="application/json"))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}


async def test_a_signature_header_too_long_to_be_one_is_refused_before_it_is_parsed(
    stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    _, session = await stack.paying_order()
    body = form_body(session["provider_session_id"])
    headers = signed(merchant_public, body)
    headers["Signature"] = headers["Signature"].replace('signature="', 'signature="' + "A" * 4000, 1)
    before = await stack.table_counts()
    response = await post_webhook(stack, body, headers)
    assert "Signature header is too long" in assert_refused(response, 401, "invalid_signature")
    assert await stack.table_counts() == before


def _powens_payload(payment_id: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(payment_body(payment_id))
    payload.update(changes)
    return payload


POWENS_HOSTILE: dict[str, tuple[Callable[[str], bytes], str]] = {
    "\\u0000 in a field": (
        lambda pid: json.dumps(_powens_payload(pid, state_detail="a\u0000b")).encode(),
        "NUL",
    ),
    "NaN": (lambda pid: json.dumps(_powens_payload(pid, amount=float("nan"))).encode(), "NaN"),
    "lone surrogate": (
        lambda pid: json.dumps(_powens_payload(pid, state_detail="\ud800")).encode(),
        "surrogate",
    ),
    "nested 20,000 deep": (
        lambda pid: (
            json.dumps(_powens_payload(pid))[:-1].encode() + b', "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
        ),
        "nested too deeply",
    ),
    "delivery id past 64 bits": (
        lambda pid: json.dumps(_powens_payload(pid, id_webhook_data=10**40)).encode(),
        "id_webhook_data",
    ),
}


@pytest.mark.parametrize("variant", list(POWENS_HOSTILE))
async def test_signed_powens_webhook_with_unstorable_content_is_400_and_writes_nothing(
    powens_stack: Stack, variant: str
) -> None:
    stack = powens_stack
    order, session = await stack.powens_paying_order()
    build, reason = POWENS_HOSTILE[variant]
    body = build(session["provider_session_id"])
    before = await stack.table_counts()

    response = await post_powens_webhook(stack, body, signed_headers(stack.powens_webhook_secret, body))
    assert reason in assert_refused(response)
    await stack.service.state.workers.drain_inbox()
    assert await stack.table_counts() == before
    assert await stack.order_status(order["id"]) == "awaiting_payment"


async def test_a_fresh_delivery_id_is_not_mistaken_for_hostile(powens_stack: Stack) -> None:
    stack = powens_stack
    _, session = await stack.powens_paying_order()
    body = json.dumps(_powens_payload(session["provider_session_id"], id_webhook_data=2**63 - 1)).encode()
    before = await stack.table_counts()
    response = await post_powens_webhook(stack, body, signed_headers(stack.powens_webhook_secret, body))
    assert response.status_code == 200, response.text
    assert (await stack.table_counts())["provider_events"] == before["provider_events"] + 1
