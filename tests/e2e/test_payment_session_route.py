"""A plain payment-session opening is answered before FastAPI's routing (app/payments/session_route.py):
it gets the answer the route gives, and every request the layer leaves to the route (another content
type, an empty body, bad options, an unknown provider, an Idempotency-Key) is answered as before,
from the same bytes. Over real HTTP, with the simulator as the provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.models import PaymentSession
from tests.e2e.conftest import Stack
from tests.support.asgi import post_then_hang_up


def _shape(session: dict[str, Any]) -> dict[str, Any]:
    """What two answers for two orders share: everything but the ids, links and times."""
    varying = {"session_id", "provider_session_id", "connect_url", "expires_at"}
    return {key: value for key, value in session.items() if key not in varying}


def _url(stack: Stack, order: dict[str, Any]) -> str:
    return f"{stack.service_url}/orders/{order['id']}/payment-session"


def _bearer(order: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {order['access_token']}"}


async def test_the_layer_and_the_route_give_the_same_answers(stack: Stack) -> None:
    plain_order = await stack.create_order()
    keyed_order = await stack.create_order()
    plain = await stack.http.post(
        _url(stack, plain_order), headers=_bearer(plain_order), json={"language": "fr"}
    )
    keyed = await stack.http.post(  # the route answers: it has an Idempotency-Key
        _url(stack, keyed_order),
        headers={**_bearer(keyed_order), "Idempotency-Key": "route-1"},
        json={"language": "fr"},
    )
    assert (plain.status_code, keyed.status_code) == (201, 201), (plain.text, keyed.text)
    assert plain.headers["content-type"] == keyed.headers["content-type"] == "application/json"
    assert sorted(plain.json()) == sorted(keyed.json())
    assert _shape(plain.json()) == _shape(keyed.json())
    assert plain.json()["status"] == "awaiting_payment"
    assert plain.headers["x-request-id"]  # the edge's headers, as for any answer

    # The session already open is handed back with 200, by the layer as by the route.
    again = await stack.http.post(_url(stack, plain_order), headers=_bearer(plain_order), json={})
    assert again.status_code == 200, again.text
    assert again.json()["session_id"] == plain.json()["session_id"]
    assert again.json()["connect_url"] == plain.json()["connect_url"]
    assert await stack.count(PaymentSession) == 2
    connects = [r for r in await stack.api_requests() if r["path"].startswith("/pis/v2/connect")]
    assert len(connects) == 2  # one session opened at the provider per order
    assert await stack.order_status(plain_order["id"]) == "awaiting_payment"


async def test_options_sent_in_pieces_or_naming_the_provider_are_read_whole(stack: Stack) -> None:
    order = await stack.create_order()
    raw = httpx.Request("POST", "/", json={"provider": "fintecture", "bank_id": "ftecfr"}).content

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 5):
            yield raw[start : start + 5]

    response = await stack.http.post(
        _url(stack, order), content=pieces(), headers={**_bearer(order), "Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["provider"] == "fintecture"
    [connect] = [r for r in await stack.api_requests() if r["path"].startswith("/pis/v2/connect")]
    assert "ftecfr" in str(connect)  # the bank preselected at the provider


async def test_requests_the_layer_leaves_to_the_route_are_answered_as_before(stack: Stack) -> None:
    order = await stack.create_order()
    stranger = await stack.create_order()
    before = await stack.table_counts()
    url = _url(stack, order)
    json_type = {**_bearer(order), "Content-Type": "application/json"}
    refused = [
        # Not JSON: the route's 400, before anything else.
        (json_type, b'{"language": ', 400, "malformed_json"),
        # Not valid options.
        (json_type, b'{"language": "french"}', 422, "validation_error"),
        (json_type, b'{"colour": "blue"}', 422, "validation_error"),
        (json_type, b"[]", 422, "validation_error"),
        # A provider not enabled here: its 422 is for the order's bearer only.
        (json_type, b'{"provider": "nopay"}', 422, "provider_not_enabled"),
        (
            {**_bearer(stranger), "Content-Type": "application/json"},
            b'{"provider": "nopay"}',
            404,
            "not_found",
        ),
        # The layer's own refusals: no bearer, another order's, a malformed order id.
        ({"Content-Type": "application/json"}, b"{}", 404, "not_found"),
        ({**_bearer(stranger), "Content-Type": "application/json"}, b"{}", 404, "not_found"),
        ({"Authorization": "Basic abc", "Content-Type": "application/json"}, b"{}", 404, "not_found"),
    ]
    for headers, body, status, code in refused:
        response = await stack.http.post(url, headers=headers, content=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    malformed_id = await stack.http.post(
        f"{stack.service_url}/orders/not-an-id/payment-session", headers=json_type, content=b"{}"
    )
    assert malformed_id.status_code == 404
    assert await stack.table_counts() == before
    assert await stack.api_requests() == []  # nothing reached the provider

    # No body and no Content-Type: the route opens the session with the default options.
    empty = await stack.http.post(url, headers=_bearer(order))
    assert empty.status_code == 201, empty.text
    assert empty.json()["provider"] == "fintecture"


async def test_a_client_that_hangs_up_before_its_options_gets_nothing_opened(stack: Stack) -> None:
    order = await stack.create_order()
    before = await stack.table_counts()
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {order['access_token']}".encode()),
    ]
    path = f"/orders/{order['id']}/payment-session"
    sent = await post_then_hang_up(stack.service, path, headers, b'{"lang')
    assert sent == []  # no answer to a client that is gone
    assert await stack.table_counts() == before
    assert await stack.api_requests() == []
