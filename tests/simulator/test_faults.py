"""Every fault knob of POST /_sim/faults does what it says."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from tests.simulator.conftest import START, Harness
from tests.simulator.contract import verify_webhook
from tests.simulator.test_oauth import assert_error


async def paid_sessions(sim: Harness, count: int) -> list[str]:
    """`count` sessions, each confirmed (one webhook each), in order."""
    ids = []
    for index in range(count):
        session_id = (await sim.connect(state=f"order-{index}"))["meta"]["session_id"]
        await sim.complete(session_id, "confirm")
        ids.append(session_id)
    return ids


def received_sessions(sim: Harness) -> list[str]:
    return [dict(parse_qsl(r.body.decode()))["session_id"] for r in sim.receiver.received]


async def test_drop_the_next_n_webhooks(sim: Harness) -> None:
    await sim.control("POST", "/faults", {"webhook_drop": {"count": 2}})
    ids = await paid_sessions(sim, 3)
    await sim.flush(include_scheduled=True)
    assert received_sessions(sim) == [ids[2]]
    states = {d["session_id"]: (d["state"], d["faults"]) for d in await sim.deliveries()}
    assert states[ids[0]] == ("dropped", ["dropped"]) and states[ids[1]] == ("dropped", ["dropped"])
    assert states[ids[2]] == ("delivered", [])


async def test_duplicate_the_next_n_webhooks_k_times_with_one_request_id(sim: Harness) -> None:
    await sim.control("POST", "/faults", {"webhook_duplicate": {"count": 1, "copies": 3}})
    ids = await paid_sessions(sim, 2)
    await sim.flush()
    assert received_sessions(sim) == [ids[0]] * 3 + [ids[1]]
    copies = sim.receiver.received[:3]
    assert len({r.headers["x-request-id"] for r in copies}) == 1
    assert len({r.body for r in copies}) == 1
    for received in copies:
        verify_webhook(
            received.headers,
            received.body,
            app_id=sim.lenient.app_id,
            private_key=sim.lenient.private_key,
            now=START,
        )
    first = (await sim.deliveries(session_id=ids[0]))[0]
    assert [a["duplicate"] for a in first["attempts"]] == [False, True, True]
    assert first["faults"] == ["duplicated x3"]


async def test_reorder_holds_the_next_n_then_sends_them_newest_first(sim: Harness) -> None:
    await sim.control("POST", "/faults", {"webhook_reorder": {"count": 3}})
    ids = await paid_sessions(sim, 2)
    await sim.flush()
    assert sim.receiver.received == []
    assert {d["state"] for d in await sim.deliveries()} == {"held"}
    ids += await paid_sessions(sim, 2)
    await sim.flush()
    assert received_sessions(sim) == [ids[2], ids[1], ids[0], ids[3]]


async def test_delay_the_next_n_webhooks_on_the_clock(sim: Harness) -> None:
    await sim.control("POST", "/faults", {"webhook_delay": {"count": 1, "seconds": 120}})
    ids = await paid_sessions(sim, 2)
    await sim.flush()
    assert received_sessions(sim) == [ids[1]]
    await sim.advance(119)
    await sim.flush()
    assert received_sessions(sim) == [ids[1]]
    await sim.advance(1)
    await sim.flush()
    assert received_sessions(sim) == [ids[1], ids[0]]


async def test_api_5xx_for_the_next_n_calls_writes_nothing(sim: Harness) -> None:
    await sim.token(sim.lenient)
    await sim.control("POST", "/faults", {"api_error": {"status": 503, "count": 2, "retry_after": 7}})
    for _ in range(2):
        response = await sim.api(
            "POST",
            "/pis/v2/connect",
            sim.lenient,
            json={"data": {"attributes": {"amount": "1.00", "currency": "EUR"}}},
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert_error(response.json(), 503, "service_unavailable", "service_unavailable")
    assert (await sim.control("GET", "/sessions"))["sessions"] == []
    await sim.connect()
    assert len((await sim.control("GET", "/sessions"))["sessions"]) == 1
    faults = (await sim.control("GET", "/faults"))["faults"]
    assert faults["api_error"]["remaining"] == 0
    recorded = (await sim.control("GET", "/requests", None))["requests"]
    assert [r["fault"] for r in recorded if r["path"] == "/pis/v2/connect"] == [
        "error 503",
        "error 503",
        None,
    ]


async def test_api_500_and_429_with_retry_after(sim: Harness) -> None:
    await sim.control("POST", "/faults", {"api_error": {"status": 500, "count": 1}})
    response = await sim.client.post("/oauth/accesstoken")
    assert response.status_code == 500
    assert_error(response.json(), 500, "internal_server_error", "internal_server_error")
    await sim.control("POST", "/faults", {"api_error": {"status": 429, "count": 1, "retry_after": 2}})
    response = await sim.client.post("/oauth/accesstoken")
    assert (response.status_code, response.headers["retry-after"]) == (429, "2")
    assert_error(response.json(), 429, "too_many_requests", "too_many_requests")


async def test_a_fraction_of_calls_fails_reproducibly_with_a_seed(sim: Harness) -> None:
    async def pattern() -> list[int]:
        await sim.control("POST", "/faults", {"api_error": {"status": 429, "fraction": 0.5, "seed": 7}})
        codes = []
        for _ in range(30):
            response = await sim.api("GET", "/pis/v2/payments", sim.lenient)
            codes.append(response.status_code)
        return codes

    await sim.token(sim.lenient)
    first = await pattern()
    second = await pattern()
    assert first == second
    assert set(first) == {200, 429}
    assert 5 < first.count(429) < 25


async def test_path_prefix_limits_api_faults(sim: Harness) -> None:
    await sim.control("POST", "/faults", {"api_error": {"status": 503, "path_prefix": "/pis/v2/payments"}})
    session_id = (await sim.connect())["meta"]["session_id"]  # token and connect still work
    assert (await sim.api("GET", f"/pis/v2/payments/{session_id}", sim.lenient)).status_code == 503
    await sim.client.delete("/_sim/faults")
    assert (await sim.api("GET", f"/pis/v2/payments/{session_id}", sim.lenient)).status_code == 200


async def test_latency_for_the_next_call(sim: Harness) -> None:
    await sim.token(sim.lenient)
    await sim.control("POST", "/faults", {"api_latency": {"seconds": 0.2, "count": 1}})
    started = time.monotonic()
    slow = await sim.api("GET", "/pis/v2/payments", sim.lenient)
    slow_elapsed = time.monotonic() - started
    fast = await sim.api("GET", "/pis/v2/payments", sim.lenient)
    assert slow.status_code == fast.status_code == 200
    assert slow_elapsed >= 0.19
    recorded = (await sim.control("GET", "/requests"))["requests"]
    assert [r["fault"] for r in recorded[-2:]] == ["latency 0.2s", None]


async def test_faults_are_validated_and_cleared(sim: Harness) -> None:
    bad = await sim.client.post("/_sim/faults", json={"api_error": {"status": 418}})
    assert bad.status_code == 400
    unknown = await sim.client.post("/_sim/faults", json={"webhook_explode": {"count": 1}})
    assert unknown.status_code == 400
    await sim.control("POST", "/faults", {"webhook_drop": {"count": 5}})
    assert (await sim.control("GET", "/faults"))["faults"]["webhook_drop"]["remaining"] == 5
    await sim.control("DELETE", "/faults")
    assert (await sim.control("GET", "/faults"))["faults"]["webhook_drop"]["remaining"] == 0
