"""What the service writes to its log, as deployed (`checkout serve`, access log on), after a
checkout with each provider, a refund, an operator's reads and sync, and forged or wrong requests:
it holds none of the secrets it was given and none of the tokens issued along the way (order
access tokens, state tokens, the providers' access tokens, the webview's code), nor the
customer's name and email, nor the payee's IBAN. Every line is one JSON object; the access log still
records every request, query keys without their values."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import select

from app.models import PaymentSession, Refund
from tests.e2e.test_json_logs import parse_lines
from tests.support.process_stack import CUSTOMER, ProcessStack, process_stack


async def _wait_paid(stack: ProcessStack, order: dict[str, Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = await stack.http.get(
            f"{stack.url}/orders/{order['id']}", headers={"Authorization": f"Bearer {order['access_token']}"}
        )
        assert response.status_code == 200, response.text
        if response.json()["status"] == "paid":
            return
        assert time.monotonic() < deadline, response.json()["status"]
        await asyncio.sleep(0.1)


def _secret_pieces(value: str) -> list[str]:
    """A secret as it could appear in a log: whole, and each line of a PEM body."""
    lines = [line for line in value.splitlines() if line and not line.startswith("-----")]
    return [value] + ([line for line in lines if len(line) >= 16] if len(lines) > 1 else [])


async def test_the_log_holds_no_secret_and_no_token(database_url: str, clean_database: str) -> None:
    async with process_stack(database_url, powens=True, INBOX_POLL_SECONDS="0.1") as stack:
        await stack.put_product()
        issued: dict[str, str] = {}

        # Fintecture: paid, back through /callback, refunded by an operator.
        order, session = await stack.paying_order()
        issued["fintecture order token"] = order["access_token"]
        back = await stack.complete(session["provider_session_id"], "confirm")
        assert (await stack.http.get(back, follow_redirects=False)).status_code == 303
        await _wait_paid(stack, order)
        refund = await stack.http.post(
            f"{stack.url}/orders/{order['id']}/refunds", headers=stack.admin, json={}
        )
        assert refund.status_code == 201, refund.text
        synced = await stack.http.post(f"{stack.url}/orders/{order['id']}/sync", headers=stack.admin)
        assert synced.status_code == 200, synced.text

        # Powens Pay: paid in the webview, back through /callback.
        powens_order, powens_session = await stack.paying_order(provider="powens")
        issued["powens order token"] = powens_order["access_token"]
        connect_url = powens_session["connect_url"]
        for key, value in parse_qsl(urlsplit(connect_url).query):
            if len(value) >= 16:
                issued[f"webview {key}"] = value
        assert (await stack.http.get(connect_url)).status_code == 200
        submitted = await stack.http.post(connect_url, data={"outcome": "validate", "scenario": "done"})
        assert submitted.status_code == 303, submitted.text
        returned = await stack.http.get(submitted.headers["location"], follow_redirects=False)
        assert returned.status_code == 303
        await _wait_paid(stack, powens_order)

        # Wrong and forged requests, and an operator's list.
        forged = await stack.http.get(f"{stack.url}/callback?state=forged-state-value&session_id=nope")
        assert forged.status_code == 400
        wrong = await stack.http.get(
            f"{stack.url}/orders/{order['id']}", headers={"Authorization": "Bearer wrong-token-value"}
        )
        assert wrong.status_code == 404
        junk = await stack.http.post(
            f"{stack.url}/webhook", content=b"session_id=x", headers={"Signature": "x"}
        )
        assert junk.status_code in (400, 401)
        listed = await stack.http.get(f"{stack.url}/orders", headers=stack.admin)
        assert listed.status_code == 200

        async with stack.sessionmaker() as db:
            for i, state in enumerate(await db.scalars(select(PaymentSession.state_token))):
                issued[f"session state {i}"] = state
            for i, state in enumerate(await db.scalars(select(Refund.state_token))):
                issued[f"refund state {i}"] = state
        for i, token in enumerate(stack.simulator.state.fintecture.store._tokens):
            issued[f"fintecture access token {i}"] = token
        for i, token in enumerate(stack.simulator.state.powens.tokens):
            issued[f"powens token {i}"] = token
        stack.service.stop()  # everything it had to say is written
        log = stack.service.log()

    secrets = {name: piece for name, value in stack.secrets.items() for piece in _secret_pieces(value)}
    looked_for = {
        **secrets,
        **issued,
        "customer email": CUSTOMER["email"],
        "customer name": CUSTOMER["name"],
        "beneficiary IBAN": stack.service.env["POWENS_BENEFICIARY_IBAN"],
        "wrong bearer token": "wrong-token-value",
    }
    assert len([name for name in issued if "state" in name]) >= 3
    assert any(name.startswith("fintecture access token") for name in issued)
    assert any(name.startswith("powens token") for name in issued)
    found = sorted(name for name, value in looked_for.items() if value in log)
    assert found == [], found
    # The access log did record the payers' returns and the forged one, keys only.
    lines = parse_lines(log)
    returns = [e for e in lines if e["event"] == "request" and e["path"].startswith("/callback?")]
    assert len(returns) >= 3, log[-3000:]
    assert all("state" in e["path"].split("?")[1].split("&") for e in returns)
    assert not any("=" in e["path"] for e in returns), returns
    assert "forged-state-value" not in log
    # And each provider call's line names its path, without the query.
    calls = [e for e in lines if e["event"] == "provider_request"]
    assert {e["provider"] for e in calls} >= {"fintecture", "powens"}, calls
    assert not any("?" in e["path"] or "=" in e["path"] for e in calls), calls
