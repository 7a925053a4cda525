"""POST /pis/v2/connect (contract §4): every documented input variant, validation, the hosted page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.simulator.conftest import PUBLIC_URL, REDIRECT_URI, Harness
from tests.simulator.test_oauth import assert_error


def body_with(
    attributes: dict[str, Any] | None = None, meta: dict[str, Any] | None = None, **data: Any
) -> dict:
    attrs = {"amount": "273.00", "currency": "EUR", "communication": "ORDER-1", **(attributes or {})}
    return {
        "meta": meta if meta is not None else {},
        "data": {"type": "payments", **data, "attributes": attrs},
    }


async def sessions(sim: Harness) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await sim.control("GET", "/sessions"))["sessions"]
    return result


async def test_connect_returns_a_session_id_and_the_hosted_page_url(sim: Harness) -> None:
    body = await sim.connect(amount="273")
    meta = body["meta"]
    assert set(meta) == {"session_id", "url"}
    assert re.fullmatch(r"[0-9a-f]{32}", meta["session_id"])
    assert meta["url"].startswith(f"{PUBLIC_URL}/connect/v2/")
    page = await sim.client.get(meta["url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "273 EUR" in page.text and "Demo Bank France" in page.text


VARIANTS = {
    "official payments type": body_with(),
    "SEPA type (PHP, NODE)": body_with(type="SEPA"),
    "PIS type + payment_method (third-party profile)": body_with(
        {"payment_method": "immediate_transfer"}, type="PIS"
    ),
    "connect type (Odoo)": body_with(type="connect"),
    "no type (Magento)": {"meta": {}, "data": {"attributes": body_with()["data"]["attributes"]}},
    "no meta at all": {"data": body_with()["data"]},
    "meta.payment_methods": body_with(meta={"payment_methods": [{"id": "immediate_transfer", "order": 1}]}),
    "full payer meta": body_with(
        meta={
            "psu_name": "Julien Lefebre",
            "psu_email": "julien@example.com",
            "psu_phone": "0974359353",
            "psu_phone_prefix": "+33",
            "psu_ip": "192.0.2.7",
            "psu_company": "My Business SARL",
            "psu_incorporation": "123456789",
            "psu_address": {
                "street": "rue Marie Stuart",
                "number": "2",
                "zip": "75002",
                "city": "PARIS",
                "country": "FR",
            },
            "expiry": 900,
        }
    ),
    "execution date, end_to_end_id, scheme": body_with(
        {"execution_date": "2026-03-05", "end_to_end_id": "E2E-1", "scheme": "INSTANT_SEPA"}
    ),
    "GBP": body_with({"currency": "GBP", "amount": "550.60"}),
    "PLN (third-party profile)": body_with({"currency": "PLN", "amount": "0.01"}),
}


@pytest.mark.parametrize("body", VARIANTS.values(), ids=VARIANTS.keys())
async def test_every_documented_input_variant_is_accepted(sim: Harness, body: dict[str, Any]) -> None:
    created = await sim.connect(body=body)
    payment = await sim.payment(created["meta"]["session_id"])
    attributes = payment["data"]["attributes"]
    assert attributes["amount"] == body["data"]["attributes"]["amount"]
    assert attributes["currency"] == body["data"]["attributes"]["currency"]
    assert payment["meta"]["status"] == "provider_required"


BAD_BODIES = {
    "zero amount": (body_with({"amount": "0"}), "invalid_field", "amount"),
    "negative amount": (body_with({"amount": "-1.00"}), "invalid_field", "amount"),
    "three decimals": (body_with({"amount": "1.234"}), "invalid_field", "amount"),
    "not a number": (body_with({"amount": "abc"}), "invalid_field", "amount"),
    "JSON number amount": (body_with({"amount": 12}), "invalid_field", "amount"),
    "missing amount": ({"data": {"attributes": {"currency": "EUR"}}}, "mandatory_field_missing", "amount"),
    "unknown currency": (body_with({"currency": "USD"}), "invalid_field", "currency"),
    "communication too long": (body_with({"communication": "x" * 141}), "invalid_field", "communication"),
    "bad email": (body_with(meta={"psu_email": "not-an-email"}), "invalid_field", "psu_email"),
    "bad ip": (body_with(meta={"psu_ip": "300.1.1.1"}), "invalid_field", "psu_ip"),
    "expiry not seconds": (body_with(meta={"expiry": "soon"}), "invalid_field", "expiry"),
    "expiry zero": (body_with(meta={"expiry": 0}), "invalid_field", "expiry"),
    "bad execution_date": (body_with({"execution_date": "28/02/2026"}), "invalid_field", "execution_date"),
    "bad payment_method": (body_with({"payment_method": "cash"}), "invalid_field", "payment_method"),
    "no data": ({"meta": {}}, "mandatory_field_missing", "data"),
}


@pytest.mark.parametrize(("body", "code", "field"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_invalid_bodies_are_400_with_the_field_named_and_nothing_created(
    sim: Harness, body: dict[str, Any], code: str, field: str
) -> None:
    response = await sim.connect(body=body, expect=400)
    assert_error(response, 400, "bad_request", code)
    assert any(field in error["detail"] for error in response["errors"]), response["errors"]
    assert await sessions(sim) == []


BAD_QUERIES_AND_HEADERS = {
    "state over 512": ({"state": "s" * 513}, {}, "invalid_field"),
    "unregistered redirect_uri": ({"redirect_uri": "https://evil.example/cb"}, {}, "invalid_field"),
    "origin_uri not http": ({"origin_uri": "javascript:alert(1)"}, {}, "invalid_field"),
    "x-language 3 letters": ({}, {"x-language": "fra"}, "invalid_field"),
    "x-country 3 letters": ({}, {"x-country": "FRA"}, "invalid_field"),
    "x-psu-type unknown": ({}, {"x-psu-type": "alien"}, "invalid_field"),
}


@pytest.mark.parametrize(
    ("params", "headers", "code"), BAD_QUERIES_AND_HEADERS.values(), ids=BAD_QUERIES_AND_HEADERS.keys()
)
async def test_invalid_query_and_headers_are_400(
    sim: Harness, params: dict[str, str], headers: dict[str, str], code: str
) -> None:
    response = await sim.connect(params=params, headers=headers, expect=400)
    assert_error(response, 400, "bad_request", code)
    assert await sessions(sim) == []


async def test_state_is_required_in_redirect_mode_and_in_strict_mode(sim: Harness) -> None:
    body = body_with()
    with_redirect = await sim.api(
        "POST", "/pis/v2/connect", sim.lenient, json=body, params={"redirect_uri": REDIRECT_URI}
    )
    assert with_redirect.status_code == 400
    assert_error(with_redirect.json(), 400, "bad_request", "mandatory_field_missing")
    strict = await sim.api("POST", "/pis/v2/connect", sim.strict, json=body)
    assert strict.status_code == 400
    assert_error(strict.json(), 400, "bad_request", "mandatory_field_missing")
    # The third-party (Arazzo) profile sends neither state nor redirect_uri: a sandbox accepts it.
    bare = await sim.api("POST", "/pis/v2/connect", sim.lenient, json=body)
    assert bare.status_code == 200


async def test_registered_redirect_uri_may_carry_its_own_query(sim: Harness) -> None:
    created = await sim.connect(params={"redirect_uri": REDIRECT_URI + "?lang=fr"})
    result = await sim.complete(created["meta"]["session_id"], "confirm")
    assert result["redirect_url"].startswith(REDIRECT_URI + "?lang=fr&session_id=")


async def test_headers_and_expiry_are_kept(sim: Harness) -> None:
    body = body_with(meta={"expiry": 900})
    created = await sim.connect(
        body=body,
        headers={"x-language": "fr", "x-country": "FR", "x-psu-type": "retail", "x-provider": "fteces"},
    )
    raw = await sim.control("GET", f"/sessions/{created['meta']['session_id']}")
    assert (raw["language"], raw["country"], raw["psu_type"]) == ("fr", "FR", "retail")
    assert raw["preselected_provider"] == "fteces"
    assert raw["expires_at"] == "2026-03-02T09:15:00+00:00"


async def test_x_provider_preselects_the_bank_on_the_hosted_page(sim: Harness) -> None:
    created = await sim.connect(headers={"x-provider": "ftecde"})
    page = await sim.client.get(created["meta"]["url"])
    checked = re.findall(r'value="(\w+)" checked', page.text)
    assert checked == ["ftecde"]
    result = await sim.complete(created["meta"]["session_id"], "confirm")
    assert "provider=ftecde" in result["redirect_url"]


async def test_a_non_demo_provider_is_offered_when_preselected(sim: Harness) -> None:
    created = await sim.connect(headers={"x-provider": "cmcifr2a"})
    page = await sim.client.get(created["meta"]["url"])
    assert re.findall(r'value="(\w+)" checked', page.text) == ["cmcifr2a"]
    await sim.complete(created["meta"]["session_id"], "confirm")
    assert (await sim.payment(created["meta"]["session_id"]))["meta"]["provider"] == "cmcifr2a"
