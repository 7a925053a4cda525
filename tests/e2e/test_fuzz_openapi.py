"""Schemathesis against the live service over HTTP, driven by its own /openapi.json.

Every operation is fuzzed with valid (positive) and invalid (negative) requests three ways: with
no credentials, with an order's access token (and that order's id), and with the operator key (and
a paid order's id, so refunds and syncs reach the provider simulator). Any 5xx fails the run, and
so does any answer the document does not declare: its status, its content type or its body.

Each caller's run is a process of its own (`tests/support/openapi_fuzz.py`): generating cases is
CPU-bound Python, and would otherwise share one interpreter lock with the service it calls. The
runs are bounded in cases and in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from tests.conftest import ADMIN_KEY, ROOT
from tests.e2e.conftest import Stack, StackFactory

# Generated cases per operation and generation mode, for each caller: about 1,100 requests, which
# take about a minute on two cores (the callers run one after the other: one core generates, the
# other serves).
EXAMPLES_PER_OPERATION = 13
MIN_REQUESTS = 1000
# A bound for a machine busier than CI's: the callers share it, and cases left out count short.
TIME_BUDGET_SECONDS = 120.0
HYPOTHESIS_STORAGE = ROOT / ".data" / "hypothesis"


async def _paid_order(stack: Stack) -> dict[str, Any]:
    order, session = await stack.paying_order()
    back = await stack.complete(session["provider_session_id"], "confirm")
    await stack.follow_callback(back)
    await stack.settle()
    assert await stack.order_status(order["id"]) == "paid"
    return order


async def _fuzz(
    base_url: str, headers: dict[str, str], path_parameters: dict[str, str], seconds: float
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "tests.support.openapi_fuzz",
        base_url,
        "--examples",
        str(EXAMPLES_PER_OPERATION),
        "--seconds",
        f"{seconds:.1f}",
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    for name, value in path_parameters.items():
        command += ["--path-parameter", f"{name}={value}"]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        # Hypothesis keeps its Unicode tables there (built once, a few seconds), not in the work tree.
        env={**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(HYPOTHESIS_STORAGE)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=seconds + 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()[-4000:]
    report: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return report


async def test_the_service_answers_every_generated_request_as_its_document_says(
    stack_factory: StackFactory,
) -> None:
    stack = await stack_factory(powens=True)
    paid = await _paid_order(stack)
    pending = await stack.create_order()

    started = time.monotonic()
    reports = []
    for headers, path_parameters in (
        ({}, {}),
        ({"Authorization": f"Bearer {pending['access_token']}"}, {"order_id": pending["id"]}),
        ({"Authorization": f"Bearer {ADMIN_KEY}"}, {"order_id": paid["id"]}),
    ):
        left = max(5.0, TIME_BUDGET_SECONDS - (time.monotonic() - started))
        reports.append(await _fuzz(stack.service_url, headers, path_parameters, left))
    elapsed = time.monotonic() - started
    requests = sum(report["requests"] for report in reports)
    statuses: Counter[int] = Counter()
    for report in reports:
        statuses.update({int(status): count for status, count in report["statuses"].items()})
    failures = [failure for report in reports for failure in report["failures"]]
    print(
        f"\nfuzz: {requests} requests in {elapsed:.1f} s "
        f"(anonymous, order token, operator: {[r['requests'] for r in reports]}), "
        f"statuses {dict(sorted(statuses.items()))}, {len(failures)} failures, "
        f"{sum(r['skipped_for_time'] for r in reports)} operation runs left out for time"
    )

    assert not failures, "\n\n".join(failures[:5])
    assert requests >= MIN_REQUESTS
    assert all(status < 500 for status in statuses)
