"""The shared `/_sim` control API (JSON) for tests, demos and benchmarks: the clock, webhook
deliveries of every provider, the request log, faults and reset.

Each provider adds its own part (`simulator/<provider>/routes_control.py`). Not part of any
provider's API and not authenticated: bind the simulator to a local address.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from simulator.faults import FaultsRequest
from simulator.guard import get_sim

router = APIRouter(prefix="/_sim", tags=["Simulator control"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClockAdvance(_Strict):
    seconds: float = Field(ge=0)


class Flush(_Strict):
    timeout: float = Field(default=10.0, gt=0, le=600)
    include_scheduled: bool = Field(
        default=False, description="Also wait for retries and delayed deliveries due later on the clock"
    )


@router.get("/clock", summary="The simulator's current time")
async def get_clock(request: Request) -> dict[str, Any]:
    return {"now": get_sim(request).clock.now().isoformat()}


@router.post("/clock/advance", summary="Move time forward; whatever falls due runs at once")
async def advance_clock(advance: ClockAdvance, request: Request) -> dict[str, Any]:
    sim = get_sim(request)
    ran = sim.advance_clock(advance.seconds)
    return {"now": sim.clock.now().isoformat(), "jobs_run": ran}


@router.get("/webhooks", summary="Webhook deliveries with their attempts, oldest first")
async def list_webhooks(
    request: Request,
    session_id: str | None = None,
    app_id: str | None = None,
    state: str | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    deliveries = [
        delivery.to_json()
        for delivery in get_sim(request).webhooks.deliveries.values()
        if (session_id is None or delivery.session_id == session_id)
        and (app_id is None or delivery.app_id == app_id)
        and (state is None or delivery.state == state)
        and (provider is None or delivery.provider == provider)
    ]
    return {"deliveries": deliveries}


@router.post("/webhooks/flush", summary="Wait until webhook delivery has settled")
async def flush_webhooks(request: Request, flush: Flush | None = None) -> dict[str, Any]:
    flush = flush or Flush()
    return await get_sim(request).webhooks.settle(
        max_wait=flush.timeout, include_scheduled=flush.include_scheduled
    )


@router.get("/requests", summary="Provider API requests received, oldest first")
async def list_requests(
    request: Request,
    path_prefix: str | None = None,
    app_id: str | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    entries = [
        entry.to_json()
        for entry in get_sim(request).requests
        if (path_prefix is None or entry.path.startswith(path_prefix))
        and (app_id is None or entry.app_id == app_id)
        and (provider is None or entry.provider == provider)
    ]
    return {"requests": entries}


@router.get("/faults", summary="Current fault settings and what is left of them")
async def get_faults(request: Request) -> dict[str, Any]:
    return {"faults": get_sim(request).faults.snapshot()}


@router.post("/faults", summary="Set fault knobs (each given knob replaces its previous setting)")
async def set_faults(faults: FaultsRequest, request: Request) -> dict[str, Any]:
    sim = get_sim(request)
    sim.faults.apply(faults)
    return {"faults": sim.faults.snapshot()}


@router.delete("/faults", summary="Clear every fault")
async def clear_faults(request: Request) -> dict[str, Any]:
    sim = get_sim(request)
    sim.faults.clear()
    return {"faults": sim.faults.snapshot()}


@router.post(
    "/reset", summary="Forget payments, sessions, tokens, requests, deliveries, faults (not the clock)"
)
async def reset(request: Request) -> dict[str, Any]:
    await get_sim(request).reset()
    return {"reset": True}
