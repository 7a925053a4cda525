"""What every provider API call goes through: the request log and injected faults.

Authentication (tokens, signatures) belongs to each provider (`simulator/<provider>/auth.py`);
a provider notes who called with `note_caller` so the log can say it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from simulator.core import Simulator


def get_sim(request: Request) -> Simulator:
    sim: Simulator = request.app.state.sim
    return sim


def note_caller(
    request: Request, *, app_id: str | None = None, signed: bool = False, verified: bool = False
) -> None:
    """Remember who called and how the call was signed, for the request log."""
    if app_id is not None:
        request.state.sim_app_id = app_id
    request.state.sim_signed = signed
    request.state.sim_verified = verified


def note_error(request: Request, code: str) -> None:
    """Remember the error code a call was answered with, for the request log."""
    request.state.sim_error_code = code


async def api_gate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Middleware for the providers' API paths: catch up with the clock, log the call, inject faults."""
    path = request.url.path
    sim = get_sim(request)
    provider = sim.provider_for(path)
    if provider is None:
        return await call_next(request)
    sim.tick()
    entry = sim.requests.record(
        at=sim.clock.now(),
        provider=provider.name,
        method=request.method,
        path=path,
        query=request.url.query,
        headers=dict(request.headers),
        body=await request.body(),
    )
    latency = sim.faults.api_latency(path)
    if latency:
        entry.fault = f"latency {latency:g}s"
        await asyncio.sleep(latency)
    fault = sim.faults.api_error(path)
    if fault is not None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        response, code = provider.fault_response(fault.status, headers)
        entry.fault = f"error {fault.status}"
        entry.status_code, entry.error_code = fault.status, code
        return response
    response = await call_next(request)
    entry.status_code = response.status_code
    entry.app_id = getattr(request.state, "sim_app_id", None)
    entry.signed = getattr(request.state, "sim_signed", False)
    entry.verified = getattr(request.state, "sim_verified", False)
    entry.error_code = getattr(request.state, "sim_error_code", None)
    return response
