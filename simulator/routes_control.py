"""The `/_sim` control API (JSON) for tests, demos and benchmarks.

Not part of Fintecture's API and not authenticated: bind the simulator to a local address.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from simulator.errors import ApiError
from simulator.faults import FaultsRequest
from simulator.fintecture.engine import OUTCOMES, Outcome, OutcomeError, Simulator
from simulator.fintecture.schemas import Amount
from simulator.fintecture.sessions import SESSION_STATUSES, TRANSFER_STATES, Session
from simulator.guard import get_sim
from simulator.webhooks import Delivery

router = APIRouter(prefix="/_sim", tags=["Simulator control"])

_OUTCOME_CODES = {400: "invalid_field", 409: "invalid_state", 410: "session_id_invalid_or_expired"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StatusChange(_Strict):
    status: str = Field(description="Any status of contract §6")
    transfer_state: str | None = Field(
        default=None, description="Omit to keep the current one; null clears it"
    )
    provider: str | None = None
    received_amount: Amount | None = None


class Completion(_Strict):
    outcome: Outcome = Field(description=" | ".join(OUTCOMES))
    bank: str | None = Field(default=None, description="Demo Bank id; default: the preselected one or ftecfr")
    iban: str | None = Field(default=None, description="Payouts: the payee's IBAN")
    name: str | None = Field(default=None, description="Payouts: the payee's name")


class ClockAdvance(_Strict):
    seconds: float = Field(ge=0)


class Flush(_Strict):
    timeout: float = Field(default=10.0, gt=0, le=600)
    include_scheduled: bool = Field(
        default=False, description="Also wait for retries and delayed deliveries due later on the clock"
    )


def _session(sim: Simulator, session_id: str) -> Session:
    sim.tick()
    session = sim.store.get(session_id)
    if session is None:
        raise ApiError(404, "not_found", "no such session")
    return session


def _session_json(sim: Simulator, session: Session) -> dict[str, Any]:
    return {**session.to_json(), "connect_url": sim.connect_url(session) if session.connect_id else None}


def _delivery_json(delivery: Delivery | None) -> dict[str, Any] | None:
    return delivery.to_json() if delivery else None


@router.get("/sessions", summary="Every session, oldest first")
async def list_sessions(request: Request) -> dict[str, Any]:
    sim = get_sim(request)
    sim.tick()
    return {"sessions": [_session_json(sim, session) for session in sim.store.sessions.values()]}


@router.get("/sessions/{session_id}", summary="A session's raw state and history")
async def get_session(session_id: str, request: Request) -> dict[str, Any]:
    sim = get_sim(request)
    return _session_json(sim, _session(sim, session_id))


@router.post("/sessions/{session_id}/status", summary="Drive a session to any status / transfer state")
async def set_status(session_id: str, change: StatusChange, request: Request) -> dict[str, Any]:
    sim = get_sim(request)
    session = _session(sim, session_id)
    if change.status not in SESSION_STATUSES:
        raise ApiError(400, "invalid_field", f"status must be one of {', '.join(SESSION_STATUSES)}")
    if change.transfer_state is not None and change.transfer_state not in TRANSFER_STATES:
        raise ApiError(400, "invalid_field", f"transfer_state must be one of {', '.join(TRANSFER_STATES)}")
    transfer_state = change.transfer_state if "transfer_state" in change.model_fields_set else ...
    delivery = sim.transition(
        session,
        change.status,
        transfer_state,
        source="control",
        provider=change.provider,
        received_amount=change.received_amount,
    )
    return {"session": _session_json(sim, session), "webhook": _delivery_json(delivery)}


@router.post("/sessions/{session_id}/complete", summary="What the payer would do on the hosted page")
async def complete(session_id: str, completion: Completion, request: Request) -> dict[str, Any]:
    sim = get_sim(request)
    session = _session(sim, session_id)
    try:
        url = sim.complete(
            session,
            completion.outcome,
            bank=completion.bank,
            iban=completion.iban,
            payee_name=completion.name,
        )
    except OutcomeError as exc:
        raise ApiError(exc.status, _OUTCOME_CODES.get(exc.status, "invalid_field"), exc.detail) from exc
    return {"redirect_url": url, "session": _session_json(sim, session)}


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
    request: Request, session_id: str | None = None, app_id: str | None = None, state: str | None = None
) -> dict[str, Any]:
    deliveries = [
        delivery.to_json()
        for delivery in get_sim(request).webhooks.deliveries.values()
        if (session_id is None or delivery.session_id == session_id)
        and (app_id is None or delivery.app_id == app_id)
        and (state is None or delivery.state == state)
    ]
    return {"deliveries": deliveries}


@router.post("/webhooks/flush", summary="Wait until webhook delivery has settled")
async def flush_webhooks(request: Request, flush: Flush | None = None) -> dict[str, Any]:
    flush = flush or Flush()
    return await get_sim(request).webhooks.settle(
        max_wait=flush.timeout, include_scheduled=flush.include_scheduled
    )


@router.get("/requests", summary="Fintecture API requests received, oldest first")
async def list_requests(
    request: Request, path_prefix: str | None = None, app_id: str | None = None
) -> dict[str, Any]:
    entries = [
        entry.to_json()
        for entry in get_sim(request).store.requests
        if (path_prefix is None or entry.path.startswith(path_prefix))
        and (app_id is None or entry.app_id == app_id)
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


@router.post("/reset", summary="Forget sessions, tokens, requests, deliveries, faults (not the clock)")
async def reset(request: Request) -> dict[str, Any]:
    await get_sim(request).reset()
    return {"reset": True}
