"""The /_sim control API: raw sessions, request log, clock, reset."""

from __future__ import annotations

from tests.simulator.conftest import START, Harness


async def test_session_raw_state_and_history(sim: Harness) -> None:
    session_id = (await sim.connect(state="order-3"))["meta"]["session_id"]
    await sim.complete(session_id, "pending", bank="ftecbe")
    raw = await sim.control("GET", f"/sessions/{session_id}")
    assert raw["state"] == "order-3" and raw["provider"] == "ftecbe"
    assert raw["connect_url"].startswith("http://sim.test/connect/v2/")
    assert [(h["status"], h["transfer_state"], h["source"]) for h in raw["history"]] == [
        ("provider_required", None, "created"),
        ("payment_pending", "pending", "payer"),
    ]
    await sim.control("GET", "/sessions/" + "0" * 32, expect=404)


async def test_status_change_is_validated(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.control("POST", f"/sessions/{session_id}/status", {"status": "payment_completed"}, expect=400)
    await sim.control(
        "POST",
        f"/sessions/{session_id}/status",
        {"status": "payment_created", "transfer_state": "done"},
        expect=400,
    )
    await sim.control("POST", f"/sessions/{session_id}/complete", {"outcome": "teleport"}, expect=400)
    await sim.control(
        "POST", f"/sessions/{session_id}/complete", {"outcome": "confirm", "bank": "nobank"}, expect=400
    )
    assert (await sim.payment(session_id))["meta"]["status"] == "provider_required"
    await sim.flush()
    assert sim.receiver.received == []


async def test_request_log_records_every_api_call_without_secrets(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.api("GET", f"/pis/v2/payments/{session_id}", sim.lenient)
    await sim.client.post(
        "/oauth/accesstoken",
        data={
            "grant_type": "client_credentials",
            "scope": "PIS",
            "client_id": "x",
            "client_secret": "hunter2",
        },
    )
    log = (await sim.control("GET", "/requests"))["requests"]
    assert [(r["method"], r["path"], r["status_code"]) for r in log] == [
        ("POST", "/oauth/accesstoken", 200),
        ("POST", "/pis/v2/connect", 200),
        ("GET", f"/pis/v2/payments/{session_id}", 200),
        ("POST", "/oauth/accesstoken", 401),
    ]
    assert log[1]["app_id"] == sim.lenient.app_id and log[1]["signed"] is False
    assert log[1]["headers"]["authorization"].startswith("Bearer …")
    assert '"amount":"273.00"' in log[1]["body"].replace(" ", "")
    assert log[0]["headers"]["authorization"] == "Basic …" + sim.lenient.basic[-4:]
    assert "hunter2" not in log[3]["body"] and log[3]["error_code"] == "invalid_app_id"
    assert log[0]["at"] == START.isoformat()
    only_pis = (await sim.control("GET", "/requests?path_prefix=/pis/"))["requests"]
    assert len(only_pis) == 2


async def test_clock_moves_forward_only(sim: Harness) -> None:
    assert (await sim.control("GET", "/clock"))["now"] == START.isoformat()
    moved = await sim.control("POST", "/clock/advance", {"seconds": 90})
    assert moved["now"] == "2026-03-02T09:01:30+00:00"
    await sim.control("POST", "/clock/advance", {"seconds": -1}, expect=400)


async def test_reset_forgets_everything_but_the_clock(sim: Harness) -> None:
    session_id = (await sim.connect())["meta"]["session_id"]
    await sim.complete(session_id, "confirm")
    await sim.control("POST", "/faults", {"webhook_drop": {"count": 1}})
    await sim.advance(5)
    await sim.control("POST", "/reset")
    assert (await sim.control("GET", "/sessions"))["sessions"] == []
    assert (await sim.control("GET", "/requests"))["requests"] == []
    assert await sim.deliveries() == []
    assert (await sim.control("GET", "/faults"))["faults"]["webhook_drop"]["remaining"] == 0
    assert (await sim.control("GET", "/clock"))["now"] == "2026-03-02T09:00:05+00:00"
    # Tokens are gone too.
    stale = await sim.api("GET", "/pis/v2/payments", sim.lenient)
    assert stale.status_code == 401


async def test_webhook_list_filters(sim: Harness) -> None:
    first = (await sim.connect())["meta"]["session_id"]
    second = (await sim.connect())["meta"]["session_id"]
    await sim.complete(first, "confirm")
    await sim.complete(second, "reject")
    await sim.flush()
    assert [d["session_id"] for d in await sim.deliveries(session_id=second)] == [second]
    assert len(await sim.deliveries(state="delivered")) == 2
    assert await sim.deliveries(app_id="someone-else") == []


async def test_unknown_paths_answer_in_the_error_shape(sim: Harness) -> None:
    response = await sim.client.get("/pis/v2/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    page = await sim.client.get("/connect/v2/not-a-link")
    assert page.status_code == 404 and "Unknown payment link" in page.text
