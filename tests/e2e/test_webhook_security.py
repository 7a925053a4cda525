"""/webhook against the live service: authentic deliveries are stored once; anything tampered with,
stale, replayed or oversized is refused and writes nothing anywhere."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update

from app.db import driver_connection
from app.models import ProviderEvent
from app.orders.service import hash_access_token
from app.payments import writer
from app.providers.base import Payer, SessionRequest
from tests.e2e.conftest import APP_ID, Stack
from tests.support.fintecture import build_delivery, public_key_from_pem


def form_body(session_id: str, status: str = "payment_created") -> bytes:
    return urlencode(
        {
            "session_id": session_id,
            "status": status,
            "customer_id": "c0ffee",
            "provider": "ftecfr",
            "state": "whatever",
            "type": "PayByBank",
            "transfer_state": "completed",
            "event": f"payment_session.status.{status}",
        }
    ).encode()


@pytest.fixture
def merchant_public(merchant_keys: tuple[str, str]) -> rsa.RSAPublicKey:
    return public_key_from_pem(merchant_keys[1])


def signed(public: rsa.RSAPublicKey, body: bytes, **kwargs: Any) -> dict[str, str]:
    options: dict[str, Any] = {
        "date": datetime.now(UTC),
        "request_id": str(uuid.uuid4()),
        "key_id": APP_ID,
    }
    options.update(kwargs)
    return build_delivery(public, body, **options)


async def post_webhook(stack: Stack, body: bytes, headers: dict[str, str]) -> Any:
    return await stack.http.post(f"{stack.service_url}/webhook", content=body, headers=headers)


def _drop(name: str) -> Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]:
    return lambda h, b: ({k: v for k, v in h.items() if k != name}, b)


TAMPERED: dict[str, Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]] = {
    "body byte changed": lambda h, b: (h, b.replace(b"payment_created", b"payment_createe", 1)),
    "digest header changed": lambda h, b: ({**h, "Digest": "SHA-256=" + "A" * 43 + "="}, b),
    "request id header changed": lambda h, b: ({**h, "X-Request-ID": str(uuid.uuid4())}, b),
    "signature garbage": lambda h, b: ({**h, "Signature": 'keyId="x",headers="date",signature="Zm9v"'}, b),
    "missing Signature": _drop("Signature"),
    "missing Digest": _drop("Digest"),
    "missing Date": _drop("Date"),
    "missing X-Request-ID": _drop("X-Request-ID"),
}


async def test_authentic_delivery_is_stored_once_and_replays_are_ignored(
    stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    order, session = await stack.paying_order()
    await stack.drive(session["provider_session_id"], "payment_created", "completed")
    await stack.settle()
    before = await stack.table_counts()

    body = form_body(session["provider_session_id"])
    headers = signed(merchant_public, body)
    first = await post_webhook(stack, body, headers)
    assert first.status_code == 200
    assert first.json() == {"received": True, "duplicate": False}
    for _ in range(3):
        replay = await post_webhook(stack, body, headers)
        assert replay.status_code == 200
        assert replay.json() == {"received": True, "duplicate": True}
    await stack.settle()
    after = await stack.table_counts()
    assert after["provider_events"] == before["provider_events"] + 1
    assert after["order_transitions"] == before["order_transitions"]  # already paid: a hint, nothing new
    assert await stack.order_status(order["id"]) == "paid"


@pytest.mark.parametrize("variant", list(TAMPERED))
async def test_tampered_webhook_is_refused_and_writes_nothing(
    stack: Stack, merchant_public: rsa.RSAPublicKey, variant: str
) -> None:
    order, session = await stack.paying_order()
    await stack.faults(webhook_drop={"count": 100})
    await stack.drive(session["provider_session_id"], "payment_pending", "pending")
    before = await stack.table_counts()

    body = form_body(session["provider_session_id"])
    headers, sent_body = TAMPERED[variant](signed(merchant_public, body), body)
    response = await post_webhook(stack, sent_body, headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_signature"
    await stack.service.state.workers.drain_inbox()
    assert await stack.table_counts() == before
    assert await stack.order_status(order["id"]) == "awaiting_payment"


# Well past the 300 s tolerance: a loaded machine may take seconds to deliver the request.
@pytest.mark.parametrize("offset", [-360, 360])
async def test_webhook_outside_the_date_window_is_refused(
    stack: Stack, merchant_public: rsa.RSAPublicKey, offset: int
) -> None:
    _, session = await stack.paying_order()
    before = await stack.table_counts()
    body = form_body(session["provider_session_id"])
    headers = signed(merchant_public, body, date=datetime.now(UTC) + timedelta(seconds=offset))
    response = await post_webhook(stack, body, headers)
    assert response.status_code == 401
    assert await stack.table_counts() == before


async def test_webhook_encrypted_for_another_key_is_refused(stack: Stack) -> None:
    _, session = await stack.paying_order()
    before = await stack.table_counts()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    body = form_body(session["provider_session_id"])
    response = await post_webhook(stack, body, signed(stranger, body))
    assert response.status_code == 401
    assert await stack.table_counts() == before


async def test_oversized_webhook_is_refused_before_verification(
    stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    _, session = await stack.paying_order()
    before = await stack.table_counts()
    body = form_body(session["provider_session_id"]) + b"&pad=" + b"x" * stack.settings.max_body_bytes
    response = await post_webhook(stack, body, signed(merchant_public, body))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await stack.table_counts() == before


async def test_delivery_for_a_session_not_known_yet_is_retried_not_dropped(stack: Stack) -> None:
    """The provider's webhook can overtake the commit of our own session row."""
    order = await stack.create_order()
    provider = stack.service.state.providers["fintecture"]
    state = uuid.uuid4().hex
    created = await provider.create_session(
        SessionRequest(
            amount=Decimal("273.50"),
            currency="EUR",
            communication=order["reference"],
            state=state,
            redirect_uri=f"{stack.service_url}/callback",
            origin_uri="http://shop.test/",
            payer=Payer(name="Camille", email="camille@example.com"),
            expiry_seconds=1800,
        )
    )
    await stack.drive(created.provider_session_id, "payment_created", "completed")
    await stack.settle()
    async with stack.sessionmaker() as db:
        event = await db.scalar(
            select(ProviderEvent).where(ProviderEvent.provider_session_id == created.provider_session_id)
        )
        assert event is not None
        assert event.processed_at is None and event.attempts >= 1
        assert "no payment session" in (event.last_error or "")

    # Our row for that session commits now; the next attempt applies the event.
    order_id = uuid.UUID(order["id"])
    session_id = uuid.uuid4()
    async with driver_connection(stack.service.state.engine) as conn:
        reservation = await writer.reserve_session(
            conn,
            order_id,
            token_hash=hash_access_token(order["access_token"]),
            session_id=session_id,
            provider="fintecture",
            state_token=state,
            now=datetime.now(UTC),
            expiry_seconds=1800,
        )
    assert reservation is not None and reservation.reserved
    locked = reservation.order
    async with driver_connection(stack.service.state.engine) as conn:
        assert await writer.attach_session(conn, locked, session_id, created) is not None
    async with stack.sessionmaker() as db, db.begin():
        await db.execute(update(ProviderEvent).values(next_attempt_at=datetime.now(UTC)))
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    async with stack.sessionmaker() as db:
        outcomes = (await db.scalars(select(ProviderEvent.outcome))).all()
    assert "applied" in outcomes


async def test_an_authentic_delivery_naming_no_payment_is_kept_and_given_up_at_once(
    stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    body = urlencode(
        {"event": "payment_session.status.payment_created", "status": "payment_created"}
    ).encode()
    response = await post_webhook(stack, body, signed(merchant_public, body))
    assert response.status_code == 200
    await stack.settle()
    async with stack.sessionmaker() as db:
        event = (await db.scalars(select(ProviderEvent))).one()
    assert event.outcome == "gave_up" and event.attempts == 1
    assert event.raw_body == body
    assert "names no payment" in (event.last_error or "")


# Deliveries to an enabled provider are answered by the webhook layer inside the edge
# (app/payments/webhooks.py), not by FastAPI's route: the answers below are that layer's.


async def _chunks(body: bytes, size: int) -> Any:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_a_delivery_sent_in_chunks_is_verified_and_stored_whole(
    stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    _, session = await stack.paying_order()
    before = await stack.table_counts()
    body = form_body(session["provider_session_id"])
    headers = signed(merchant_public, body)
    # No Content-Length: the body arrives in several pieces (chunked transfer encoding).
    response = await stack.http.post(
        f"{stack.service_url}/webhook", content=_chunks(body, 40), headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    async with stack.sessionmaker() as db:
        event = (
            await db.scalars(
                select(ProviderEvent).where(ProviderEvent.delivery_id == headers["X-Request-ID"])
            )
        ).one()
    assert event.raw_body == body
    assert (await stack.table_counts())["provider_events"] == before["provider_events"] + 1


async def test_a_chunked_delivery_over_the_limit_is_refused_and_writes_nothing(
    stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    _, session = await stack.paying_order()
    before = await stack.table_counts()
    body = form_body(session["provider_session_id"]) + b"&pad=" + b"x" * stack.settings.max_body_bytes
    response = await stack.http.post(
        f"{stack.service_url}/webhooks/fintecture",
        content=_chunks(body, 4096),
        headers=signed(merchant_public, body),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await stack.table_counts() == before


@pytest.mark.parametrize("path", ["/webhook", "/webhooks/fintecture"])
async def test_webhook_answers_carry_what_every_answer_carries(
    stack: Stack, merchant_public: rsa.RSAPublicKey, path: str
) -> None:
    _, session = await stack.paying_order()
    body = form_body(session["provider_session_id"])
    headers = signed(merchant_public, body)
    accepted = await stack.http.post(f"{stack.service_url}{path}", content=body, headers=headers)
    refused = await stack.http.post(
        f"{stack.service_url}{path}", content=body, headers={**headers, "Digest": "SHA-256=" + "A" * 43 + "="}
    )
    assert (accepted.status_code, refused.status_code) == (200, 401)
    for answer in (accepted, refused):
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert int(answer.headers["content-length"]) == len(answer.content)
    # The delivery's own X-Request-ID is a plain id: the answer carries it back.
    assert accepted.headers["x-request-id"] == headers["X-Request-ID"]
    assert refused.json()["error"] == {
        "code": "invalid_signature",
        "message": "webhook rejected: signed digest does not match the digest header",
    }


async def test_other_requests_to_webhook_paths_get_the_routes_answers(
    stack: Stack, merchant_public: rsa.RSAPublicKey
) -> None:
    _, session = await stack.paying_order()
    before = await stack.table_counts()
    body = form_body(session["provider_session_id"])
    unknown = await stack.http.post(
        f"{stack.service_url}/webhooks/nosuchbank", content=body, headers=signed(merchant_public, body)
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {"code": "not_found", "message": "webhook endpoint not found"}
    malformed = await stack.http.post(f"{stack.service_url}/webhooks/Fintecture", content=body)
    assert malformed.status_code == 422
    assert malformed.json()["error"]["code"] == "validation_error"
    wrong_method = await stack.http.get(f"{stack.service_url}/webhook")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert await stack.table_counts() == before
