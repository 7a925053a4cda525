"""Contract test: the seed Arazzo workflow (token → connect → read) runs against the simulator.

The workflow is a fixture copy of the seed; its source descriptions are replaced by the simulator's
own OpenAPI (operationIds createAccessToken, createPisV2Connect, getPaymentSession), served by a
live uvicorn on 127.0.0.1 because the runner speaks HTTP through `requests`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from arazzo_runner import ArazzoRunner
from arazzo_runner.models import WorkflowExecutionStatus

from simulator.app import create_app
from simulator.config import SimulatorConfig
from tests.simulator.conftest import LiveServer, Merchant, app_config, local_socket

WORKFLOW = Path(__file__).parent.parent / "fixtures" / "arazzo" / "fintecture-token-then-payment-workflow.yml"


@pytest.fixture
def live_simulator(merchants: dict[str, Merchant]) -> Iterator[str]:
    sock, base_url = local_socket()
    app_settings = app_config(merchants["lenient"])
    app_settings.webhook_url = None
    app = create_app(SimulatorConfig(applications=[app_settings], public_url=base_url))
    with LiveServer(app, sock):
        yield base_url
    sock.close()


def openapi_source(spec: dict[str, Any], prefix: str, base_url: str) -> dict[str, Any]:
    return {
        **spec,
        "servers": [{"url": base_url}],
        "paths": {path: item for path, item in spec["paths"].items() if path.startswith(prefix)},
    }


def test_seed_workflow_completes_all_three_steps(
    live_simulator: str, merchants: dict[str, Merchant], tmp_path: Path
) -> None:
    base_url = live_simulator
    spec = httpx.get(f"{base_url}/openapi.json").json()
    operation_ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    assert {"createAccessToken", "createPisV2Connect", "getPaymentSession"} <= operation_ids
    # Validation errors are documented as Fintecture's 400, not FastAPI's 422.
    assert all("422" not in op["responses"] for item in spec["paths"].values() for op in item.values())

    workflow = yaml.safe_load(WORKFLOW.read_text())
    sources = {"oauthApi": "/oauth/", "pisApi": "/pis/"}
    for source in workflow["sourceDescriptions"]:
        generated = tmp_path / f"{source['name']}.json"
        generated.write_text(json.dumps(openapi_source(spec, sources[source["name"]], base_url)))
        source["url"] = generated.name
    workflow_path = tmp_path / "workflow.yml"
    workflow_path.write_text(yaml.safe_dump(workflow, sort_keys=False))

    merchant = merchants["lenient"]
    request_id = str(uuid.uuid4())
    runner = ArazzoRunner.from_arazzo_path(str(workflow_path))
    result = runner.execute_workflow(
        "token-then-payment",
        inputs={
            "clientId": merchant.app_id,
            "clientSecret": merchant.app_secret,
            "amount": "273.00",
            "currency": "EUR",
            "communication": "ORDER-1",
            "requestId": request_id,
        },
    )

    assert result.status == WorkflowExecutionStatus.WORKFLOW_COMPLETE, result.error
    steps = result.step_outputs or {}
    assert set(steps) == {"mintToken", "createPayment", "getPayment"}
    assert all("runner_error_context" not in outputs for outputs in steps.values()), steps
    outputs = result.outputs
    assert outputs["accessToken"] and steps["mintToken"]["expiresIn"] == 3600
    assert re.fullmatch(r"[0-9a-f]{32}", outputs["sessionId"])
    assert outputs["connectUrl"].startswith(f"{base_url}/connect/v2/")
    # The third-party profile reads `status` at the top level; the official shape has it in meta.
    assert outputs["status"] is None

    session = httpx.get(f"{base_url}/_sim/sessions/{outputs['sessionId']}").json()
    assert (session["status"], session["amount"], session["currency"]) == (
        "provider_required",
        "273.00",
        "EUR",
    )
    log = httpx.get(f"{base_url}/_sim/requests").json()["requests"]
    assert [(r["method"], r["path"], r["status_code"]) for r in log] == [
        ("POST", "/oauth/accesstoken", 200),
        ("POST", "/pis/v2/connect", 200),
        ("GET", f"/pis/v2/payments/{outputs['sessionId']}", 200),
    ]
    assert log[1]["headers"]["x-request-id"] == request_id
    assert (
        '"payment_method": "immediate_transfer"' in log[1]["body"] or "immediate_transfer" in log[1]["body"]
    )
