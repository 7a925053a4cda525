"""Fintecture's part of the `/_sim` control API: its sessions (JSON).

Not part of Fintecture's API and not authenticated: bind the simulator to a local address.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from simulator.errors import ApiError
from simulator.fintecture.auth import get_fintecture
from simulator.fintecture.engine import OUTCOMES, FintectureSim, Outcome, OutcomeError
from simulator.fintecture.schemas import Amount
from simulator.fintecture.sessions import SESSION_STATUSES, TRANSFER_STATES, Session
from simulator.webhooks import Delivery

router = APIRouter(prefix="/_sim", tags=["Simulator control: Fintecture"])

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


def _session(sim: FintectureSim, session_id: str) -> Session:
    sim.tick()
    session = sim.store.get(session_id)
    if session is None:
        raise ApiError(404, "not_found", "no such session")
    return session


def _session_json(sim: FintectureSim, session: Session) -> dict[str, Any]:
    return {**session.to_json(), "connect_url": sim.connect_url(session) if session.connect_id else None}


def _delivery_json(delivery: Delivery | None) -> dict[str, Any] | None:
    return delivery.to_json() if delivery else None


@router.get("/sessions", summary="Every Fintecture session, oldest first")
async def list_sessions(request: Request) -> dict[str, Any]:
    sim = get_fintecture(request)
    sim.tick()
    return {"sessions": [_session_json(sim, session) for session in sim.store.sessions.values()]}


@router.get("/sessions/{session_id}", summary="A session's raw state and history")
async def get_session(session_id: str, request: Request) -> dict[str, Any]:
    sim = get_fintecture(request)
    return _session_json(sim, _session(sim, session_id))


@router.post("/sessions/{session_id}/status", summary="Drive a session to any status / transfer state")
async def set_status(session_id: str, change: StatusChange, request: Request) -> dict[str, Any]:
    sim = get_fintecture(request)
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
    sim = get_fintecture(request)
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
