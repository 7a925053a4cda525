"""Request signatures (contract §2): strict mode (production) and lenient mode (sandbox)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tests.simulator.conftest import Harness, Merchant, SimFactory
from tests.simulator.contract import digest_of, rfc2822, sign_request
from tests.simulator.test_oauth import assert_error

BODY = {
    "meta": {"psu_name": "Zoë Ångström", "psu_email": "zoe@example.com"},
    "data": {"type": "PIS", "attributes": {"amount": "273.00", "currency": "EUR", "communication": "ord123"}},
}
# The Python SDK posts compact JSON with \u escapes and signs the query unencoded.
RAW_BODY = json.dumps(BODY, separators=(",", ":")).encode()
RAW_URL = "/pis/v2/connect?state=ord123&redirect_uri=https://shop.example/cb"


def overridden(request: httpx.Request, **changes: str) -> dict[str, str]:
    """The request's headers with some replaced (httpx lists header names in lower case)."""
    return {**request.headers, **{name.replace("_", "-"): value for name, value in changes.items()}}


async def build(
    sim: Harness, merchant: Merchant, method: str, url: str, body: bytes | None = None
) -> httpx.Request:
    headers = {"Authorization": f"Bearer {await sim.token(merchant)}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return sim.client.build_request(method, url, content=body, headers=headers)


async def sessions(sim: Harness) -> list[dict[str, object]]:
    result: list[dict[str, object]] = (await sim.control("GET", "/sessions"))["sessions"]
    return result


@pytest.mark.parametrize("date_style", ["gmt", "plus", "minus", "paris"])
async def test_strict_mode_accepts_a_request_signed_per_the_contract(sim: Harness, date_style: str) -> None:
    merchant = sim.strict
    request = await build(sim, merchant, "POST", RAW_URL, RAW_BODY)
    assert request.url.raw_path == RAW_URL.encode()  # the query goes on the wire unencoded
    sign_request(
        request,
        key_id=merchant.app_id,
        private_key=merchant.private_key,
        date=rfc2822(sim.clock.now(), date_style),
    )
    response = await sim.client.send(request)
    assert response.status_code == 200, response.text
    session_id = response.json()["meta"]["session_id"]

    get = await build(sim, merchant, "GET", f"/pis/v2/payments/{session_id}")
    sign_request(get, key_id=merchant.app_id, private_key=merchant.private_key, date=rfc2822(sim.clock.now()))
    assert "digest" not in get.headers
    assert 'headers="(request-target) date x-request-id"' in get.headers["signature"]
    assert (await sim.client.send(get)).status_code == 200

    recorded = [
        r for r in (await sim.control("GET", "/requests"))["requests"] if r["path"].startswith("/pis")
    ]
    assert [(r["signed"], r["verified"], r["status_code"]) for r in recorded] == [(True, True, 200)] * 2
    assert recorded[0]["query"] == "state=ord123&redirect_uri=https://shop.example/cb"


async def test_ruby_style_digest_on_get_is_accepted(sim: Harness) -> None:
    merchant = sim.strict
    session_id = (await sim.connect(merchant))["meta"]["session_id"]
    get = await build(sim, merchant, "GET", f"/pis/v2/payments/{session_id}")
    sign_request(
        get,
        key_id=merchant.app_id,
        private_key=merchant.private_key,
        date=rfc2822(sim.clock.now()),
        digest_header=digest_of(b"{}"),
    )
    assert 'headers="(request-target) date digest x-request-id"' in get.headers["signature"]
    assert (await sim.client.send(get)).status_code == 200


async def signed(
    sim: Harness, merchant: Merchant, key: RSAPrivateKey | None = None, key_id: str | None = None
) -> httpx.Request:
    request = await build(sim, merchant, "POST", RAW_URL, RAW_BODY)
    sign_request(
        request,
        key_id=key_id or merchant.app_id,
        private_key=key or merchant.private_key,
        date=rfc2822(sim.clock.now()),
    )
    return request


async def assert_rejected(sim: Harness, request: httpx.Request, because: str) -> None:
    response = await sim.client.send(request)
    assert response.status_code == 401, response.text
    assert_error(response.json(), 401, "unauthorized", "invalid_signature")
    assert because in response.json()["errors"][0]["detail"]
    assert await sessions(sim) == []


async def test_strict_mode_rejects_unsigned_requests(sim: Harness) -> None:
    request = await build(sim, sim.strict, "POST", RAW_URL, RAW_BODY)
    response = await sim.client.send(request)
    assert response.status_code == 401
    assert_error(response.json(), 401, "unauthorized", "invalid_signature")
    assert "signature, date, x-request-id, digest" in response.json()["errors"][0]["detail"]
    get = await sim.client.get(
        "/pis/v2/payments", headers={"Authorization": f"Bearer {await sim.token(sim.strict)}"}
    )
    assert get.status_code == 401
    recorded = (await sim.control("GET", "/requests"))["requests"]
    assert [
        (r["signed"], r["verified"], r["status_code"]) for r in recorded if r["path"].startswith("/pis")
    ] == [
        (False, False, 401),
        (False, False, 401),
    ]


async def test_strict_mode_rejects_a_tampered_body(sim: Harness) -> None:
    request = await signed(sim, sim.strict)
    tampered = RAW_BODY.replace(b"273.00", b"2.73")
    # Same signed headers, other bytes: the Digest no longer matches.
    forged = sim.client.build_request("POST", RAW_URL, content=tampered, headers=dict(request.headers))
    await assert_rejected(sim, forged, "Digest does not match")
    # Digest recomputed for the new body: now the signature no longer matches.
    headers = overridden(request, digest=digest_of(tampered))
    await assert_rejected(
        sim, sim.client.build_request("POST", RAW_URL, content=tampered, headers=headers), "does not verify"
    )


async def test_strict_mode_rejects_a_tampered_query_or_header(sim: Harness) -> None:
    request = await signed(sim, sim.strict)
    other_state = RAW_URL.replace("ord123", "ord999")
    await assert_rejected(
        sim,
        sim.client.build_request("POST", other_state, content=RAW_BODY, headers=dict(request.headers)),
        "does not verify",
    )
    # The same query percent-encoded is not what was signed (request-target is the raw query).
    encoded = "/pis/v2/connect?state=ord123&redirect_uri=https%3A%2F%2Fshop.example%2Fcb"
    await assert_rejected(
        sim,
        sim.client.build_request("POST", encoded, content=RAW_BODY, headers=dict(request.headers)),
        "does not verify",
    )
    new_id = overridden(request, x_request_id="d693daaf-0000-4000-8000-000000000000")
    await assert_rejected(
        sim, sim.client.build_request("POST", RAW_URL, content=RAW_BODY, headers=new_id), "does not verify"
    )
    later = overridden(request, date=rfc2822(sim.clock.now() + timedelta(seconds=1)))
    await assert_rejected(
        sim, sim.client.build_request("POST", RAW_URL, content=RAW_BODY, headers=later), "does not verify"
    )


async def test_strict_mode_rejects_a_wrong_key_or_key_id(
    sim: Harness, keys: dict[str, RSAPrivateKey]
) -> None:
    await assert_rejected(sim, await signed(sim, sim.strict, key=keys["other"]), "does not verify")
    await assert_rejected(sim, await signed(sim, sim.strict, key=sim.lenient.private_key), "does not verify")
    await assert_rejected(sim, await signed(sim, sim.strict, key_id=sim.lenient.app_id), "keyId")


async def test_strict_mode_rejects_a_signature_that_skips_required_headers(sim: Harness) -> None:
    request = await signed(sim, sim.strict)
    without_digest = request.headers["Signature"].replace(" digest", "")
    headers = overridden(request, signature=without_digest)
    await assert_rejected(
        sim,
        sim.client.build_request("POST", RAW_URL, content=RAW_BODY, headers=headers),
        "must cover: digest",
    )
    bad_date = overridden(request, date="yesterday")
    await assert_rejected(
        sim, sim.client.build_request("POST", RAW_URL, content=RAW_BODY, headers=bad_date), "RFC 2822"
    )
    garbage = overridden(request, signature='keyId="x"')
    await assert_rejected(
        sim, sim.client.build_request("POST", RAW_URL, content=RAW_BODY, headers=garbage), "has no headers"
    )


async def test_date_window_when_configured(make_sim: SimFactory) -> None:
    async with make_sim(request_date_tolerance_seconds=300) as sim:
        request = await build(sim, sim.strict, "POST", RAW_URL, RAW_BODY)
        stale = rfc2822(sim.clock.now() - timedelta(seconds=301))
        sign_request(request, key_id=sim.strict.app_id, private_key=sim.strict.private_key, date=stale)
        await assert_rejected(sim, request, "window")
        fresh = await build(sim, sim.strict, "POST", RAW_URL, RAW_BODY)
        sign_request(
            fresh,
            key_id=sim.strict.app_id,
            private_key=sim.strict.private_key,
            date=rfc2822(sim.clock.now() - timedelta(seconds=299)),
        )
        assert (await sim.client.send(fresh)).status_code == 200


async def test_lenient_mode_verifies_only_what_is_present(sim: Harness) -> None:
    merchant = sim.lenient
    unsigned = await build(sim, merchant, "POST", RAW_URL, RAW_BODY)
    assert (await sim.client.send(unsigned)).status_code == 200
    good = await signed(sim, merchant)
    assert (await sim.client.send(good)).status_code == 200
    recorded = [
        r for r in (await sim.control("GET", "/requests"))["requests"] if r["path"].startswith("/pis")
    ]
    assert [(r["signed"], r["verified"]) for r in recorded] == [(False, False), (True, True)]

    await sim.control("POST", "/reset")
    sim._tokens.clear()
    wrong_key = await signed(sim, merchant, key=sim.strict.private_key)
    await assert_rejected(sim, wrong_key, "does not verify")
    bad_digest = await build(sim, merchant, "POST", RAW_URL, RAW_BODY)
    bad_digest.headers["Digest"] = digest_of(b"something else")
    await assert_rejected(sim, bad_digest, "Digest does not match")


async def test_token_call_signature_is_checked_when_present(sim: Harness) -> None:
    merchant = sim.strict
    form = b"app_id=" + merchant.app_id.encode() + b"&grant_type=client_credentials&scope=PIS"
    headers = {"Authorization": merchant.basic, "Content-Type": "application/x-www-form-urlencoded"}
    plain = sim.client.build_request("POST", "/oauth/accesstoken", content=form, headers=headers)
    assert (await sim.client.send(plain)).status_code == 200
    good = sim.client.build_request("POST", "/oauth/accesstoken", content=form, headers=headers)
    sign_request(
        good, key_id=merchant.app_id, private_key=merchant.private_key, date=rfc2822(sim.clock.now())
    )
    assert (await sim.client.send(good)).status_code == 200
    bad = sim.client.build_request("POST", "/oauth/accesstoken", content=form, headers=headers)
    sign_request(
        bad, key_id=merchant.app_id, private_key=sim.lenient.private_key, date=rfc2822(sim.clock.now())
    )
    response = await sim.client.send(bad)
    assert response.status_code == 401
    assert_error(response.json(), 401, "unauthorized", "invalid_signature")


def _resent(sim: Harness, signed: httpx.Request, url: str) -> httpx.Request:
    """The signed request's headers on another spelling of its URL."""
    return sim.client.build_request(signed.method, url, headers=dict(signed.headers))


async def test_strict_mode_accepts_filter_brackets_signed_literally_and_sent_percent_encoded(
    sim: Harness,
) -> None:
    """Fintecture's official Python SDK signs `filter[status]=…` and sends `filter%5Bstatus%5D=…`."""
    merchant = sim.strict
    paid = (await sim.connect(merchant, state="paid-1"))["meta"]["session_id"]
    await sim.complete(paid, "confirm")
    await sim.connect(merchant, state="open-1")
    literal = "/pis/v2/payments?filter[status]=payment_created"
    request = await build(sim, merchant, "GET", literal)
    assert request.url.raw_path == literal.encode()
    sign_request(
        request, key_id=merchant.app_id, private_key=merchant.private_key, date=rfc2822(sim.clock.now())
    )

    sent = _resent(sim, request, "/pis/v2/payments?filter%5Bstatus%5D=payment_created")
    assert sent.url.raw_path == b"/pis/v2/payments?filter%5Bstatus%5D=payment_created"
    response = await sim.client.send(sent)
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["data"]] == [paid]
    # Lower-case escapes too, and the literal spelling as signed.
    assert (
        await sim.client.send(_resent(sim, request, literal.replace("[", "%5b").replace("]", "%5d")))
    ).status_code == 200
    assert (await sim.client.send(_resent(sim, request, literal))).status_code == 200

    # The other way round: signed percent-encoded, sent with literal brackets.
    encoded = "/pis/v2/payments?filter%5Bstatus%5D=payment_created"
    other = await build(sim, merchant, "GET", encoded)
    sign_request(
        other, key_id=merchant.app_id, private_key=merchant.private_key, date=rfc2822(sim.clock.now())
    )
    assert (await sim.client.send(_resent(sim, other, literal))).status_code == 200

    recorded = [
        r for r in (await sim.control("GET", "/requests"))["requests"] if r["path"] == "/pis/v2/payments"
    ]
    assert [(r["signed"], r["verified"], r["status_code"]) for r in recorded] == [(True, True, 200)] * 4
    assert recorded[0]["query"] == "filter%5Bstatus%5D=payment_created"


async def test_only_brackets_are_normalised_in_the_signed_query(sim: Harness) -> None:
    merchant = sim.strict
    # A percent-encoded state is verified exactly as sent: signing it decoded does not pass.
    signed_decoded = await build(
        sim, merchant, "GET", "/pis/v2/payments?filter[status]=payment_created&x=a/b"
    )
    sign_request(
        signed_decoded,
        key_id=merchant.app_id,
        private_key=merchant.private_key,
        date=rfc2822(sim.clock.now()),
    )
    response = await sim.client.send(
        _resent(sim, signed_decoded, "/pis/v2/payments?filter%5Bstatus%5D=payment_created&x=a%2Fb")
    )
    assert response.status_code == 401
    assert_error(response.json(), 401, "unauthorized", "invalid_signature")
    # Another value behind the brackets is another request.
    other_status = _resent(sim, signed_decoded, "/pis/v2/payments?filter%5Bstatus%5D=payment_pending&x=a/b")
    assert (await sim.client.send(other_status)).status_code == 401
    # A connect whose state is percent-encoded on the wire but was signed decoded is refused.
    decoded = "/pis/v2/connect?state=ord/123&redirect_uri=https://shop.example/cb"
    request = await build(sim, merchant, "POST", decoded, RAW_BODY)
    assert request.url.raw_path == decoded.encode()
    sign_request(
        request, key_id=merchant.app_id, private_key=merchant.private_key, date=rfc2822(sim.clock.now())
    )
    forged = sim.client.build_request(
        "POST", decoded.replace("ord/123", "ord%2F123"), content=RAW_BODY, headers=dict(request.headers)
    )
    await assert_rejected(sim, forged, "does not verify")
    assert (await sim.client.send(request)).status_code == 200
