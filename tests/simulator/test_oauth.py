"""POST /oauth/accesstoken (contract §1) and token lifetime."""

from __future__ import annotations

import base64

from tests.simulator.conftest import Harness

FORM = {"grant_type": "client_credentials", "scope": "PIS"}


def assert_error(body: dict[str, object], status: int, top: str, sub: str) -> None:
    """Contract §11: {status, code, log_id, errors:[{code,status,title,detail}]}."""
    assert body["status"] == str(status)
    assert body["code"] == top
    assert isinstance(body["log_id"], str) and body["log_id"]
    errors = body["errors"]
    assert isinstance(errors, list) and errors
    first = errors[0]
    assert first["code"] == sub
    assert first["status"] == str(status)
    assert first["title"] and first["detail"]


async def test_basic_credentials_give_a_one_hour_bearer_token(sim: Harness) -> None:
    merchant = sim.lenient
    response = await sim.client.post(
        "/oauth/accesstoken",
        headers={"Authorization": merchant.basic, "Accept": "application/json"},
        data={**FORM, "app_id": merchant.app_id},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) > 20


async def test_body_credentials_variant_of_the_arazzo_profile(sim: Harness) -> None:
    merchant = sim.lenient
    response = await sim.client.post(
        "/oauth/accesstoken",
        data={**FORM, "client_id": merchant.app_id, "client_secret": merchant.app_secret},
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    listed = await sim.api("GET", "/pis/v2/payments", merchant, token=token)
    assert listed.status_code == 200


async def test_wrong_secret_unknown_app_or_no_credentials_are_401(sim: Harness) -> None:
    merchant = sim.lenient
    wrong = "Basic " + base64.b64encode(f"{merchant.app_id}:nope".encode()).decode()
    unknown = "Basic " + base64.b64encode(b"who:ever").decode()
    for headers in ({"Authorization": wrong}, {"Authorization": unknown}, {}):
        response = await sim.client.post("/oauth/accesstoken", headers=headers, data=FORM)
        assert response.status_code == 401
        assert_error(response.json(), 401, "unauthorized", "invalid_app_id")


async def test_app_id_field_must_match_the_credentials(sim: Harness) -> None:
    response = await sim.client.post(
        "/oauth/accesstoken",
        headers={"Authorization": sim.lenient.basic},
        data={**FORM, "app_id": sim.strict.app_id},
    )
    assert response.status_code == 401
    assert_error(response.json(), 401, "unauthorized", "invalid_app_id")


async def test_grant_type_and_scope_are_checked(sim: Harness) -> None:
    auth = {"Authorization": sim.lenient.basic}
    cases = [
        ({"scope": "PIS"}, 400, "bad_request", "mandatory_field_missing"),
        ({"grant_type": "authorization_code", "scope": "PIS"}, 400, "bad_request", "invalid_field"),
        ({"grant_type": "client_credentials"}, 400, "bad_request", "mandatory_field_missing"),
        ({"grant_type": "client_credentials", "scope": "AIS"}, 401, "unauthorized", "invalid_scopes"),
    ]
    for form, status, top, sub in cases:
        response = await sim.client.post("/oauth/accesstoken", headers=auth, data=form)
        assert response.status_code == status, form
        assert_error(response.json(), status, top, sub)


async def test_token_endpoint_wants_a_form_body(sim: Harness) -> None:
    response = await sim.client.post(
        "/oauth/accesstoken", headers={"Authorization": sim.lenient.basic}, json=FORM
    )
    assert response.status_code == 400
    assert_error(response.json(), 400, "bad_request", "invalid_field")


async def test_token_expires_after_3600_seconds_on_the_clock(sim: Harness) -> None:
    token = await sim.token(sim.lenient)
    await sim.advance(3599)
    assert (await sim.api("GET", "/pis/v2/payments", sim.lenient, token=token)).status_code == 200
    await sim.advance(1)
    response = await sim.api("GET", "/pis/v2/payments", sim.lenient, token=token)
    assert response.status_code == 401
    assert_error(response.json(), 401, "unauthorized", "invalid_token")


async def test_missing_or_unknown_bearer_token_is_401(sim: Harness) -> None:
    no_token = await sim.client.get("/pis/v2/payments")
    assert no_token.status_code == 401
    assert_error(no_token.json(), 401, "unauthorized", "invalid_token")
    unknown = await sim.api("GET", "/pis/v2/payments", sim.lenient, token="not-a-token")
    assert unknown.status_code == 401
    assert_error(unknown.json(), 401, "unauthorized", "invalid_token")
