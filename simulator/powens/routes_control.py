"""Powens's part of the `/_sim` control API (JSON), in the style of Fintecture's.

Errors use the control API's shape (`simulator/errors.py`), like the rest of `/_sim`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from simulator.errors import ApiError
from simulator.powens.auth import get_powens
from simulator.powens.engine import OUTCOMES, Outcome, OutcomeError, PowensSim
from simulator.powens.payments import ERROR_CODES, STATES, Payment

router = APIRouter(prefix="/_sim/powens", tags=["Simulator control: Powens"])

_OUTCOME_CODES = {400: "invalid_field", 409: "invalid_state"}
_STATE_NAME = re.compile(r"[A-Za-z][A-Za-z_]{0,39}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StateChange(_Strict):
    state: str = Field(description=" | ".join(STATES))
    error_code: str | None = Field(
        default=None,
        description="Any value, documented (" + ", ".join(ERROR_CODES) + ") or not; "
        "rejected without one: noSpecifiedReason",
    )
    error_description: str | None = None
    state_detail: str | None = Field(default=None, description="null or cancelling")
    allow_unknown: bool = Field(default=False, description="Accept a state Powens does not document")


class Completion(_Strict):
    outcome: Outcome = Field(description=" | ".join(OUTCOMES))
    scenario: str | None = Field(
        default=None,
        description="validate: codes like pdng/rjct; default: the label's own",
    )
    redirect_uri: str | None = Field(
        default=None, description="The webview's redirect_uri (cancel, bug); default: client_redirect_uri"
    )


def _payment(powens: PowensSim, payment_id: int) -> Payment:
    powens.tick()
    payment = powens.payments.get(payment_id)
    if payment is None:
        raise ApiError(404, "not_found", "no such Powens payment")
    return payment


@router.get("/payments", summary="Every Powens payment, oldest first")
async def list_payments(request: Request) -> dict[str, Any]:
    powens = get_powens(request)
    powens.tick()
    return {"payments": [powens.control_json(payment) for payment in powens.payments.values()]}


@router.get("/payments/{payment_id}", summary="A Powens payment, its scenario, webview URL and history")
async def get_payment(payment_id: int, request: Request) -> dict[str, Any]:
    powens = get_powens(request)
    return powens.control_json(_payment(powens, payment_id))


@router.post(
    "/payments/{payment_id}/state",
    summary="Drive a Powens payment to any state (accepted, partial, expired included)",
)
async def set_state(payment_id: int, change: StateChange, request: Request) -> dict[str, Any]:
    powens = get_powens(request)
    payment = _payment(powens, payment_id)
    if change.state not in STATES and not (change.allow_unknown and _STATE_NAME.fullmatch(change.state)):
        raise ApiError(400, "invalid_field", f"state must be one of {', '.join(STATES)} (or allow_unknown)")
    if change.state_detail not in (None, "cancelling"):
        raise ApiError(400, "invalid_field", "state_detail must be null or cancelling")
    delivery = powens.force_state(
        payment,
        change.state,
        error_code=change.error_code,
        error_description=change.error_description,
        state_detail=change.state_detail,
    )
    return {"payment": powens.control_json(payment), "webhook": delivery.to_json() if delivery else None}


@router.post("/payments/{payment_id}/complete", summary="What the payer would do in the webview")
async def complete(payment_id: int, completion: Completion, request: Request) -> dict[str, Any]:
    powens = get_powens(request)
    payment = _payment(powens, payment_id)
    try:
        url = powens.complete(
            payment, completion.outcome, scenario=completion.scenario, redirect_uri=completion.redirect_uri
        )
    except OutcomeError as exc:
        raise ApiError(exc.status, _OUTCOME_CODES.get(exc.status, "invalid_field"), exc.detail) from exc
    return {"redirect_url": url, "payment": powens.control_json(payment)}
