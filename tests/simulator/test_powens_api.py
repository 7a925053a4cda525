"""The Powens Pay API (contract §1, §2, §4, §6): tokens, payments, scoped tokens, cancelling, errors."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from tests.simulator.conftest import (
    POWENS_API,
    POWENS_CLIENTS,
    POWENS_IBAN,
    POWENS_REDIRECT,
    Harness,
    powens_payment_body,
)


def assert_powens_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Powens's error shape: {code, description, message, request_id}."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "description", "message", "request_id"}
    assert body["code"] == code
    assert isinstance(body["description"], str) and body["description"]
    assert body["message"] is None and body["request_id"]
    return body


# Tokens (§1)


@pytest.mark.parametrize("scope", ["payments:admin", ["payments:admin"], "payments"])
async def test_service_token_is_json_client_credentials_without_expires_in(sim: Harness, scope: Any) -> None:
    shop = POWENS_CLIENTS["shop"]
    response = await sim.client.post(
        f"{POWENS_API}/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": shop.client_id,
            "client_secret": shop.client_secret,
            "scope": scope,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "scope"}
    assert body["scope"] == (scope if isinstance(scope, str) else scope[0])
    assert len(body["token"]) > 20


async def test_token_errors(sim: Harness) -> None:
    shop = POWENS_CLIENTS["shop"]
    good = {
        "grant_type": "client_credentials",
        "client_id": shop.client_id,
        "client_secret": shop.client_secret,
        "scope": "payments:admin",
    }
    url = f"{POWENS_API}/auth/token"
    assert_powens_error(
        await sim.client.post(url, json={**good, "client_secret": "wrong"}), 401, "unauthorized"
    )
    assert_powens_error(await sim.client.post(url, json={**good, "client_id": "nobody"}), 401, "unauthorized")
    no_scope = {key: value for key, value in good.items() if key != "scope"}
    assert_powens_error(await sim.client.post(url, json=no_scope), 400, "missingParameter")
    assert_powens_error(
        await sim.client.post(url, json={**good, "scope": "payments:all"}), 400, "invalidValue"
    )
    assert_powens_error(
        await sim.client.post(url, json={**good, "grant_type": "password"}), 400, "invalidValue"
    )
    # JSON only: the form-encoded body of an OAuth server is refused.
    assert_powens_error(await sim.client.post(url, data=good), 400, "invalidValue")


async def test_service_tokens_last_30_minutes_on_the_simulator_clock(sim: Harness) -> None:
    token = await sim.powens.token()
    await sim.advance(29 * 60 + 59)
    assert (await sim.powens.api("GET", "/payments", token=token)).status_code == 200
    await sim.advance(1)
    expired = await sim.powens.api("GET", "/payments", token=token)
    assert_powens_error(expired, 401, "unauthorized")
    assert "expired" in expired.json()["description"]
    assert_powens_error(await sim.powens.api("GET", "/payments", token="made-up"), 401, "unauthorized")
    missing = await sim.client.get(f"{POWENS_API}/payments")
    assert_powens_error(missing, 401, "unauthorized")


async def test_scopes_are_enforced(sim: Harness) -> None:
    read_only = await sim.powens.token(scope="payments:read-only")
    created = await sim.powens.create()
    denied = await sim.powens.api("POST", "/payments", token=read_only, json=powens_payment_body())
    assert_powens_error(denied, 403, "forbidden")
    assert (await sim.powens.api("GET", f"/payments/{created['id']}", token=read_only)).status_code == 200
    sensitive = await sim.powens.api(
        "GET", f"/payments/{created['id']}", token=read_only, params={"show_sensitive": "true"}
    )
    assert_powens_error(sensitive, 403, "forbidden")
    cancel_only = await sim.powens.token(scope="payments:cancel")
    assert_powens_error(
        await sim.powens.api("GET", f"/payments/{created['id']}", token=cancel_only), 403, "forbidden"
    )
    cancelled = await sim.powens.api(
        "POST", f"/payments/{created['id']}", token=cancel_only, json={"cancel": True}
    )
    assert cancelled.status_code == 200, cancelled.text


# Creating and reading a payment (§2, §4)


async def test_create_answers_the_payment_resource_in_state_created(sim: Harness) -> None:
    response = await sim.powens.api(
        "POST", "/payments", json=powens_payment_body(label="ORDER-42", amount=50.90, state="order-42")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["id"], int) and not isinstance(body["id"], bool)
    assert body["state"] == "created"
    for name in (
        "state_detail",
        "error_code",
        "error_description",
        "action",
        "validate_uri",
        "payer_identity",
    ):
        assert body[name] is None
    assert body["client_redirect_uri"] == POWENS_REDIRECT and body["client_state"] == "order-42"
    assert body["register_date"] == "2026-03-02 10:00:00"  # 09:00 UTC, naive Europe/Paris time
    [instruction] = body["instructions"]
    assert instruction["label"] == "ORDER-42"
    # A JSON number written with ten decimals, as the reference shows.
    assert re.search(r'"amount":50\.9000000000[,}]', response.text)
    assert json.loads(response.text, parse_float=Decimal)["instructions"][0]["amount"] == Decimal("50.90")
    assert instruction["currency"]["id"] == "EUR" and instruction["currency"]["precision"] == 2
    assert instruction["currency"]["symbol"] == "€"
    assert instruction["execution_date_type"] == "first_open_day"
    assert instruction["beneficiary"]["identification"] == POWENS_IBAN
    assert instruction["beneficiary"]["label"] == "ACME Corp."
    assert 0 < len(instruction["reference_id"]) <= 31
    assert instruction["state"] is None
    assert await sim.powens.payment(body["id"]) == body


async def test_ids_are_distinct_integers(sim: Harness) -> None:
    ids = [(await sim.powens.create())["id"] for _ in range(3)]
    assert len(set(ids)) == 3 and ids == sorted(ids)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"client_redirect_uri": POWENS_REDIRECT + "?order=1"}, "invalidValue"),
        ({"client_redirect_uri": "https://evil.example/return"}, "invalidValue"),
        ({"client_redirect_uri": None}, "missingParameter"),
        ({"client_state": "x" * 2001}, "invalidValue"),
        ({"instructions": []}, "invalidValue"),
        ({"amount": "50.90"}, "invalidValue"),
        ({"amount": 0}, "invalidValue"),
        ({"amount": 50.905}, "invalidValue"),
        ({"label": ""}, "invalidValue"),
        ({"execution_date_type": "whenever"}, "invalidValue"),
        ({"execution_date_type": "periodic"}, "notSupported"),
        ({"execution_date_type": "deferred"}, "missingParameter"),
        ({"iban": "FR7630006000011234567890188"}, "invalidValue"),
        ({"currency": "JPY"}, "invalidValue"),
        ({"payer_identity": {"kind": "individual", "first_name": "Germaine"}}, "invalidValue"),
        ({"connector_uuid": "not-a-uuid"}, "invalidValue"),
    ],
)
async def test_create_refuses_bad_requests(sim: Harness, change: dict[str, Any], code: str) -> None:
    body = powens_payment_body()
    instruction = body["instructions"][0]
    for name, value in change.items():
        if name in {"amount", "label", "execution_date_type", "currency"}:
            instruction[name] = value
        elif name == "iban":
            instruction["beneficiary"]["identification"] = value
        elif value is None:
            del body[name]
        else:
            body[name] = value
    assert_powens_error(await sim.powens.api("POST", "/payments", json=body), 400, code)
    assert (await sim.powens.control("GET", "/payments"))["payments"] == []


async def test_one_instruction_only(sim: Harness) -> None:
    body = powens_payment_body()
    body["instructions"] *= 2
    assert_powens_error(await sim.powens.api("POST", "/payments", json=body), 400, "notSupported")


async def test_a_deferred_payment_needs_a_future_date(sim: Harness) -> None:
    body = powens_payment_body(execution_date_type="deferred")
    body["instructions"][0]["execution_date"] = "2026-03-02"
    assert_powens_error(await sim.powens.api("POST", "/payments", json=body), 400, "invalidValue")
    body["instructions"][0]["execution_date"] = "2026-03-10"
    created = await sim.powens.api("POST", "/payments", json=body)
    assert created.status_code == 200 and created.json()["instructions"][0]["execution_date"] == "2026-03-10"


async def test_the_maximum_amount_per_client(sim: Harness) -> None:
    capped = POWENS_CLIENTS["capped"]
    assert (await sim.powens.create(capped, amount=10))["state"] == "created"
    assert (await sim.powens.create(capped, amount=9.99))["state"] == "created"
    refused = await sim.powens.api("POST", "/payments", client=capped, json=powens_payment_body(amount=10.01))
    body = assert_powens_error(refused, 400, "invalidAmount")
    assert "10.01" in body["description"] and "10.00" in body["description"]
    # Another client has no cap.
    assert (await sim.powens.create(amount=2500))["state"] == "created"


async def test_identities_are_checked_when_sent_and_hidden_unless_sensitive(sim: Harness) -> None:
    identity = {"kind": "individual", "first_name": "Germaine", "last_name": "Michu"}
    created = await sim.powens.create(payer_identity=identity)
    assert created["payer_identity"] is None
    shown = await sim.powens.api("GET", f"/payments/{created['id']}", params={"show_sensitive": "true"})
    assert shown.json()["payer_identity"] == identity
    corporate = {"kind": "corporate", "org_name": "ACME"}
    refused = await sim.powens.api("POST", "/payments", json=powens_payment_body(payer_identity=corporate))
    assert_powens_error(refused, 400, "invalidValue")


async def test_identities_can_be_required(make_sim: Any) -> None:
    from tests.simulator.conftest import powens_config

    async with make_sim(
        powens_applications=[powens_config(POWENS_CLIENTS["shop"], require_identities=True)]
    ) as sim:
        refused = await sim.powens.api("POST", "/payments", json=powens_payment_body())
        assert_powens_error(refused, 400, "missingParameter")
        body = powens_payment_body(payer_identity={"first_name": "Germaine", "last_name": "Michu"})
        body["instructions"][0]["beneficiary_identity"] = {
            "kind": "corporate",
            "org_name": "ACME Corp.",
            "scheme_name": "siren",
            "identification": "012345678",
        }
        assert (await sim.powens.api("POST", "/payments", json=body)).status_code == 200


async def test_another_clients_payment_is_not_found(sim: Harness) -> None:
    created = await sim.powens.create()
    other = POWENS_CLIENTS["gzip"]
    assert_powens_error(
        await sim.powens.api("GET", f"/payments/{created['id']}", client=other), 404, "notFound"
    )
    assert_powens_error(await sim.powens.api("GET", "/payments/123"), 404, "notFound")
    assert_powens_error(await sim.powens.api("GET", "/payments/abc"), 404, "notFound")


async def test_list_payments_newest_first_with_a_state_filter(sim: Harness) -> None:
    first = (await sim.powens.create())["id"]
    second = (await sim.powens.create())["id"]
    await sim.powens.create(POWENS_CLIENTS["gzip"])
    await sim.powens.api("POST", f"/payments/{first}", json={"cancel": True})
    listed = (await sim.powens.api("GET", "/payments")).json()["payments"]
    assert [p["id"] for p in listed] == [second, first]
    rejected = (await sim.powens.api("GET", "/payments", params={"state": "rejected"})).json()["payments"]
    assert [p["id"] for p in rejected] == [first]


# The payment-scoped token (§1, §3)


async def test_scoped_token_for_the_webview(sim: Harness) -> None:
    payment_id = (await sim.powens.create())["id"]
    scoped = await sim.powens.scoped_token(payment_id)
    assert set(scoped) == {"token", "scope", "expires_in", "id_payment"}
    assert scoped["scope"] == "payments:validate"
    assert scoped["expires_in"] == 604800 and scoped["id_payment"] == payment_id
    # It is for the webview, not for the API.
    assert_powens_error(
        await sim.powens.api("GET", f"/payments/{payment_id}", token=scoped["token"]), 403, "forbidden"
    )
    admin = await sim.powens.api(
        "POST", f"/payments/{payment_id}/scopedtoken", json={"scope": ["payments:admin"]}
    )
    assert_powens_error(admin, 400, "invalidValue")
    assert_powens_error(
        await sim.powens.api("POST", f"/payments/{payment_id}/scopedtoken", json={}), 400, "missingParameter"
    )
    other = await sim.powens.api("POST", "/payments/1/scopedtoken", json={"scope": ["payments:validate"]})
    assert_powens_error(other, 404, "notFound")


# Cancelling (§6)


async def test_cancel_a_created_payment_rejects_it_at_once(sim: Harness) -> None:
    payment_id = (await sim.powens.create())["id"]
    response = await sim.powens.api("POST", f"/payments/{payment_id}", json={"cancel": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "rejected" and body["error_code"] == "cancelledByUser"
    assert body["instructions"][0]["state"] == "rejected"
    await sim.flush()
    [delivery] = await sim.deliveries(session_id=str(payment_id))
    assert delivery["fields"]["state"] == "rejected"
    again = await sim.powens.api("POST", f"/payments/{payment_id}", json={"cancel": True})
    assert_powens_error(again, 400, "notSupported")


async def test_cancel_a_pending_instant_payment_is_not_supported(sim: Harness) -> None:
    payment_id = (await sim.powens.create(execution_date_type="instant", label="pdng - x"))["id"]
    await sim.powens.complete(payment_id)
    response = await sim.powens.api("POST", f"/payments/{payment_id}", json={"cancel": True})
    body = assert_powens_error(response, 400, "notSupported")
    assert body["description"].startswith("Bad request")
    assert (await sim.powens.payment(payment_id))["state"] == "pending"


async def test_cancel_a_pending_payment_needs_the_payers_consent(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="pdng - x"))["id"]
    await sim.powens.complete(payment_id)
    await sim.flush()
    before = len(await sim.deliveries(provider="powens"))
    response = await sim.powens.api(
        "POST",
        f"/payments/{payment_id}",
        json={
            "cancel": True,
            "client_redirect_uri": "https://shop.example/powens/cancelled",
            "client_state": "c-1",
        },
    )
    body = response.json()
    assert (body["state"], body["state_detail"], body["action"]) == ("pending", "cancelling", "redirect")
    consent_url = body["validate_uri"]
    assert consent_url.startswith("http://sim.test/powens/webview/cancel/")
    page = await sim.client.get(consent_url)
    assert page.status_code == 200 and "cancel" in page.text.lower()
    answer = await sim.client.post(consent_url, data={"outcome": "confirm_cancel"})
    assert answer.status_code == 303
    assert answer.headers["location"] == (
        "https://shop.example/powens/cancelled?state=c-1&id_payment="
        f"{payment_id}&payment_state=rejected&error_code=cancelledByUser"
    )
    after = await sim.powens.payment(payment_id)
    assert (after["state"], after["state_detail"], after["error_code"]) == (
        "rejected",
        None,
        "cancelledByUser",
    )
    await sim.flush()
    assert len(await sim.deliveries(provider="powens")) == before + 1  # the cancelling step sent none
    assert (await sim.client.get(consent_url)).status_code == 404
    # The scenario's next phase no longer applies.
    await sim.advance(900)
    assert (await sim.powens.payment(payment_id))["state"] == "rejected"


async def test_the_payer_may_refuse_the_cancellation(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="pdng - x"))["id"]
    await sim.powens.complete(payment_id)
    await sim.powens.api("POST", f"/payments/{payment_id}", json={"cancel": True})
    result = await sim.powens.complete(payment_id, "refuse_cancel")
    assert result["redirect_url"].endswith(f"id_payment={payment_id}&payment_state=pending")
    body = await sim.powens.payment(payment_id)
    assert (body["state"], body["state_detail"], body["validate_uri"]) == ("pending", None, None)
    await sim.advance(900)
    assert (await sim.powens.payment(payment_id))["state"] == "done"


async def test_other_updates_are_not_simulated(sim: Harness) -> None:
    payment_id = (await sim.powens.create())["id"]
    for body in ({"confirm": True}, {"validated": True, "cancel": True}, {}):
        assert_powens_error(
            await sim.powens.api("POST", f"/payments/{payment_id}", json=body), 400, "notSupported"
        )
    assert_powens_error(
        await sim.powens.api("POST", f"/payments/{payment_id}", json={"cancel": False}), 400, "invalidValue"
    )


# The API beside Fintecture's


async def test_unknown_paths_and_faults_answer_in_powens_shape(sim: Harness) -> None:
    assert_powens_error(await sim.client.get(f"{POWENS_API}/nothing"), 404, "notFound")
    await sim.powens.token()
    await sim.control(
        "POST", "/faults", {"api_error": {"status": 503, "count": 1, "path_prefix": POWENS_API}}
    )
    failed = await sim.powens.api("GET", "/payments")
    assert_powens_error(failed, 503, "serviceUnavailable")
    assert (await sim.powens.api("GET", "/payments")).status_code == 200
    # Fintecture is untouched by a fault narrowed to Powens's paths, and keeps its own shape.
    assert (await sim.client.get("/pis/v2/nothing")).json()["code"] == "not_found"


async def test_the_request_log_records_powens_calls_without_secrets(sim: Harness) -> None:
    payment_id = (await sim.powens.create())["id"]
    log = (await sim.control("GET", "/requests?provider=powens"))["requests"]
    assert [(r["method"], r["path"], r["status_code"], r["app_id"]) for r in log] == [
        ("POST", f"{POWENS_API}/auth/token", 200, "10001"),
        ("POST", f"{POWENS_API}/payments", 200, "10001"),
    ]
    assert "powens-secret" not in log[0]["body"]
    assert '"client_secret":"…"' in log[0]["body"].replace(" ", "")
    assert log[1]["headers"]["authorization"].startswith("Bearer …")
    assert log[1]["provider"] == "powens"
    assert (await sim.powens.payment(payment_id))["id"] == payment_id
    assert (await sim.control("GET", "/requests?provider=fintecture"))["requests"] == []


async def test_the_openapi_document_describes_both_providers(sim: Harness) -> None:
    schema = (await sim.client.get("/openapi.json")).json()
    assert {"/powens/2.0/auth/token", "/powens/2.0/payments", "/pis/v2/connect"} <= set(schema["paths"])
    bad = schema["paths"]["/powens/2.0/payments"]["post"]["responses"]["400"]
    assert bad["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/PowensError"


async def test_a_cancellation_waiting_for_consent_survives_another_pending_phase(sim: Harness) -> None:
    payment_id = (await sim.powens.create(label="pdng/pdng - x"))["id"]
    await sim.powens.complete(payment_id)
    await sim.powens.api("POST", f"/payments/{payment_id}", json={"cancel": True})
    await sim.advance(900)
    body = await sim.powens.control("GET", f"/payments/{payment_id}")
    assert (body["state"], body["state_detail"]) == ("pending", "cancelling")
    result = await sim.powens.complete(payment_id, "confirm_cancel")
    assert result["payment"]["state"] == "rejected"
