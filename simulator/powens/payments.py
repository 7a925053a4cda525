"""Powens payments: the states, the test connector's label grammar, and the Payment resource.

Amounts are kept as `Decimal` and answered as JSON numbers with 10 decimals (`50.9000000000`), as
the reference shows; `dumps` writes them so (the standard encoder cannot).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi.responses import Response

from simulator.clock import iso

# Contract §4.
STATES = ("created", "validating", "pending", "done", "accepted", "rejected", "expired", "partial")
FINAL = frozenset({"done", "accepted", "rejected", "expired", "partial"})
# What the instruction's own `state` becomes with the payment's (one instruction per payment).
_INSTRUCTION_STATE = {
    "pending": "pending",
    "done": "done",
    "accepted": "accepted",
    "rejected": "rejected",
    "partial": "accepted",  # "the bank reports partial with no detail: all instructions accepted"
}
EXECUTION_DATE_TYPES = ("first_open_day", "instant", "deferred", "periodic")
# The payment-level error codes of the reference (an open list: the control API takes any).
ERROR_CODES = (
    "invalidEmitter",
    "insufficientFunds",
    "invalidAmount",
    "invalidCurrency",
    "invalidDate",
    "invalidBeneficiary",
    "invalidLabel",
    "invalidReferenceId",
    "regulatoryReason",
    "authenticationFailed",
    "noAnswerFromCustomer",
    "noSpecifiedReason",
    "CancelledByUser",
    "CancelledByClient",
    "confirmationRefused",
    "bankMessage",
    "invalidValue",
    "websiteUnavailable",
    "bug",
)

TEST_CONNECTOR_UUID = "338178e6-3d01-564f-9a7b-52ca442459bf"
TEST_CONNECTOR_NAME = "Powens Test Bank"

CURRENCIES: dict[str, dict[str, Any]] = {
    "EUR": {"id": "EUR", "symbol": "€", "prefix": False, "crypto": False, "precision": 2, "name": "Euro"},
    "GBP": {
        "id": "GBP",
        "symbol": "£",
        "prefix": True,
        "crypto": False,
        "precision": 2,
        "name": "British pound",
    },
}

# Contract §7: the test connector's codes, what each one means, and its error_code (inferred).
SCENARIO_CODES: dict[str, tuple[str, str | None]] = {
    "pdng": ("pending", None),
    "canc": ("rejected", "CancelledByUser"),
    "rjct": ("rejected", "noSpecifiedReason"),
    "err": ("rejected", "invalidAmount"),
    "bug": ("rejected", "bug"),
    "done": ("done", None),
}
DEFAULT_SCENARIO = ("pdng",)  # a label without codes: pending for one phase, then done
MAX_SCENARIO_CODES = 3


def parse_scenario(text: str) -> tuple[str, ...] | None:
    """The codes written before the first `-` of a label (`pdng/rjct - order 12`): up to three
    known codes separated by `/`, any case. Anything else is not a scenario (None)."""
    head = text.split("-", 1)[0]
    codes = tuple(part.strip().lower() for part in head.split("/"))
    if not 1 <= len(codes) <= MAX_SCENARIO_CODES or any(code not in SCENARIO_CODES for code in codes):
        return None
    return codes


def plan(codes: tuple[str, ...]) -> list[str]:
    """The codes the payment goes through, one per phase: it stops at the first final one, and one
    that ends without a final state ends `done`."""
    steps: list[str] = []
    for code in codes:
        steps.append(code)
        if SCENARIO_CODES[code][0] in FINAL:
            return steps
    return [*steps, "done"]


@dataclass
class Transition:
    at: datetime
    state: str
    state_detail: str | None
    error_code: str | None
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "state": self.state,
            "state_detail": self.state_detail,
            "error_code": self.error_code,
            "source": self.source,
        }


@dataclass
class Instruction:
    id: int
    label: str
    amount: Decimal
    currency: str
    execution_date_type: str
    execution_date: date | None
    beneficiary: dict[str, Any]
    beneficiary_identity: dict[str, Any] | None
    reference_id: str
    state: str | None = None


@dataclass
class Payment:
    id: int
    client_id: str
    state: str
    register_date: datetime
    instruction: Instruction  # one per payment: bulk payments are not simulated
    client_redirect_uri: str
    client_state: str | None
    payer: dict[str, Any] | None = None
    payer_identity: dict[str, Any] | None = None
    operator_identity: dict[str, Any] | None = None
    connector_uuid: str | None = None
    state_detail: str | None = None
    error_code: str | None = None
    error_description: str | None = None
    action: str | None = None
    validate_uri: str | None = None
    validate_mechanism: str | None = None
    # The label scenario as planned at validation: (due, code) steps; `generation` invalidates it.
    steps: list[tuple[datetime, str]] = field(default_factory=list)
    generation: int = 0
    # A cancellation waiting for the payer's consent.
    cancel_key: str | None = None
    cancel_redirect_uri: str | None = None
    cancel_state: str | None = None
    scoped_token: str | None = None  # the latest, for /_sim's ready-made webview URL
    history: list[Transition] = field(default_factory=list)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL

    def resource(self, *, sensitive: bool) -> dict[str, Any]:
        """The Payment resource (contract §4); identities only with `sensitive` (show_sensitive)."""
        instruction = self.instruction
        return {
            "id": self.id,
            "state": self.state,
            "state_detail": self.state_detail,
            "error_code": self.error_code,
            "error_description": self.error_description,
            "action": self.action,
            "validate_uri": self.validate_uri,
            "validate_mechanism": self.validate_mechanism,
            "fields": None,
            "connector_uuid": self.connector_uuid,
            "id_connector": None,
            "register_date": paris_naive(self.register_date),
            "payer": self.payer,
            "payer_identity": self.payer_identity if sensitive else None,
            "operator_identity": self.operator_identity if sensitive else None,
            "client_redirect_uri": self.client_redirect_uri,
            "client_state": self.client_state,
            "instructions": [
                {
                    "id": instruction.id,
                    "label": instruction.label,
                    "amount": RawNumber(f"{instruction.amount:.10f}"),
                    "currency": currency_object(instruction.currency),
                    "execution_date_type": instruction.execution_date_type,
                    "execution_date": (
                        instruction.execution_date.isoformat() if instruction.execution_date else None
                    ),
                    "beneficiary": instruction.beneficiary,
                    "beneficiary_identity": instruction.beneficiary_identity if sensitive else None,
                    "reference_id": instruction.reference_id,
                    "state": instruction.state,
                }
            ],
        }

    def set_state(self, state: str) -> None:
        self.state = state
        if state in _INSTRUCTION_STATE:
            self.instruction.state = _INSTRUCTION_STATE[state]


def currency_object(code: str) -> dict[str, Any]:
    known = CURRENCIES.get(code)
    base = known or {
        "id": code,
        "symbol": code,
        "prefix": False,
        "crypto": False,
        "precision": 2,
        "name": code,
    }
    return {**base, "marketcap": None, "datetime": None}


try:
    _PARIS: ZoneInfo | None = ZoneInfo("Europe/Paris")
except ZoneInfoNotFoundError:  # no time zone database: fall back to UTC
    _PARIS = None


def paris_naive(moment: datetime) -> str:
    """`2022-09-29 08:05:30`: Powens's naive dates, read as Europe/Paris time by one connector."""
    local = moment.astimezone(_PARIS) if _PARIS is not None else moment.astimezone(UTC)
    return local.strftime("%Y-%m-%d %H:%M:%S")


class RawNumber(str):
    """A JSON number written exactly as this text (`50.9000000000`)."""


_RAW_MARK = "\u0000number:"
_RAW = re.compile(r'"\\u0000number:(-?[0-9]+(?:\.[0-9]+)?)"')


def _marked(value: Any) -> Any:
    if isinstance(value, RawNumber):
        return _RAW_MARK + value
    if isinstance(value, dict):
        return {key: _marked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_marked(item) for item in value]
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, with every `RawNumber` as a number."""
    text = json.dumps(_marked(value), ensure_ascii=False, separators=(",", ":"))
    return _RAW.sub(r"\1", text).encode()


class PowensJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
