"""Payment sessions (payments, payouts, refunds) and the JSON shapes Fintecture returns for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from simulator.clock import iso
from simulator.fintecture.config import AppConfig

# Contract §6: every documented session status and transfer state.
SESSION_STATUSES = (
    "session_initiated",
    "provider_required",
    "sca_required",
    "payment_waiting",
    "payment_pending",
    "payment_created",
    "payment_unsuccessful",
    "payment_cancelled",
    "payment_expired",
    "payment_partial",
    "payment_error",
    "payment_unknown",
    "order_created",
    "iban_required",
    "iban_received",
)
TRANSFER_STATES = (
    "completed",
    "sent",
    "processing",
    "pending",
    "authorized",
    "accepted",
    "received",
    "overpaid",
    "insufficient",
    "rejected",
    "initiated",
    "blocked",
    "cancelled",
    "multi-signature",
)

# Before the payer has done anything that reaches a bank, a session can still expire or be cancelled.
EXPIRABLE = frozenset(
    {"session_initiated", "provider_required", "sca_required", "payment_waiting", "iban_required"}
)
CANCELLABLE = EXPIRABLE | {"payment_unsuccessful"}
# The hosted page offers the bank choice again after a rejection, until expiry (contract §6).
PAYABLE = frozenset(
    {"session_initiated", "provider_required", "sca_required", "payment_waiting", "payment_unsuccessful"}
)

DEMO_BANKS = {
    "ftecfr": "Demo Bank France",
    "fteces": "Demo Bank España",
    "ftecde": "Demo Bank Deutschland",
    "ftecit": "Demo Bank Italia",
    "ftecbe": "Demo Bank Belgique",
}

PAY_BY_BANK = "PayByBank"
PAYOUT = "RequestForPayout"
REFUND = "Refund"


@dataclass
class Transition:
    at: datetime
    status: str
    transfer_state: str | None
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "status": self.status,
            "transfer_state": self.transfer_state,
            "source": self.source,
        }


@dataclass
class Session:
    session_id: str
    app_id: str
    type: str
    amount: str  # exactly as the merchant sent it ("273", "550.60")
    currency: str
    communication: str | None
    created_at: datetime
    expires_at: datetime
    status: str
    customer_id: str
    end_to_end_id: str
    execution_date: date
    scheme: str = "SEPA"
    transfer_state: str | None = None
    connect_id: str | None = None
    state: str | None = None
    redirect_uri: str | None = None
    origin_uri: str | None = None
    provider: str | None = None
    preselected_provider: str | None = None
    language: str | None = None
    country: str | None = None
    psu_type: str | None = None
    psu: dict[str, Any] = field(default_factory=dict)
    beneficiary: dict[str, Any] | None = None
    debtor_account_id: str | None = None
    refunded_session_id: str | None = None
    received_amount: str | None = None
    payout_method: str | None = None
    history: list[Transition] = field(default_factory=list)

    @property
    def decimal_amount(self) -> Decimal:
        return Decimal(self.amount)

    @property
    def is_accepted(self) -> bool:
        return self.status in {"payment_created", "order_created"}

    @property
    def has_settlement_completed(self) -> bool:
        return self.transfer_state in {"completed", "received"}

    def to_json(self) -> dict[str, Any]:
        """Everything the simulator knows about the session (GET /_sim/sessions/{id})."""
        return {
            "session_id": self.session_id,
            "app_id": self.app_id,
            "type": self.type,
            "status": self.status,
            "transfer_state": self.transfer_state,
            "amount": self.amount,
            "currency": self.currency,
            "communication": self.communication,
            "state": self.state,
            "redirect_uri": self.redirect_uri,
            "origin_uri": self.origin_uri,
            "provider": self.provider,
            "preselected_provider": self.preselected_provider,
            "customer_id": self.customer_id,
            "connect_id": self.connect_id,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "refunded_session_id": self.refunded_session_id,
            "received_amount": self.received_amount,
            "psu": self.psu,
            "language": self.language,
            "country": self.country,
            "psu_type": self.psu_type,
            "history": [step.to_json() for step in self.history],
        }


def _beneficiary(session: Session, app: AppConfig) -> dict[str, Any]:
    if session.beneficiary is not None:
        return session.beneficiary
    return app.beneficiary.model_dump()


def payment_attributes(
    session: Session, app: AppConfig, *, with_virtual_beneficiary: bool = False
) -> dict[str, Any]:
    merchant_is_debtor = session.type in {PAYOUT, REFUND}
    attributes: dict[str, Any] = {
        "amount": session.amount,
        "currency": session.currency,
        "communication": session.communication,
        "end_to_end_id": session.end_to_end_id,
        "execution_date": session.execution_date.isoformat(),
        "payment_scheme": session.scheme,
        "transfer_state": session.transfer_state,
        "bank_account_id": app.bank_account_id,
        "account_type": "external",
        "beneficiary": _beneficiary(session, app),
        "debtor": {
            "bank_account_id": app.bank_account_id if merchant_is_debtor else session.debtor_account_id
        },
    }
    if session.received_amount is not None:
        attributes["received_amount"] = session.received_amount
    if with_virtual_beneficiary:
        attributes["virtual_beneficiary"] = {
            "name": app.beneficiary.name,
            "iban": "FR7616958000014471528306957",
            "swift_bic": "QNTOFRP1XXX",
            "bank_name": "Fintecture simulator",
            "street": "rue de la Paix",
            "number": "1",
            "zip": "75002",
            "city": "Paris",
            "country": "FR",
        }
    return attributes


def payment_meta(session: Session) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "session_id": session.session_id,
        "status": session.status,
        "code": 200,
        "provider": session.provider,
        "is_accepted": session.is_accepted,
        "has_settlement_completed": session.has_settlement_completed,
        "type": session.type,
        "initial_type": session.type,
        "customer_id": session.customer_id,
    }
    if session.refunded_session_id:
        meta["refunded_session_id"] = session.refunded_session_id
    return meta


def payment_resource(
    session: Session, app: AppConfig, *, with_virtual_beneficiary: bool = False
) -> dict[str, Any]:
    """GET /pis/v2/payments/{id} (contract §5); transfer_state also at data level, where Magento reads it."""
    return {
        "meta": payment_meta(session),
        "data": {
            "id": session.session_id,
            "type": "payments",
            "transfer_state": session.transfer_state,
            "attributes": payment_attributes(session, app, with_virtual_beneficiary=with_virtual_beneficiary),
        },
    }


def payment_list_item(session: Session, app: AppConfig) -> dict[str, Any]:
    """One entry of GET /pis/v2/payments (Ruby SDK spec: `data[].meta` and `data[].attributes`)."""
    return {
        "id": session.session_id,
        "type": "payments",
        "meta": payment_meta(session),
        "attributes": payment_attributes(session, app),
    }
