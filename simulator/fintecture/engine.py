"""Fintecture's behaviour: sessions moving through their statuses, and what each move emits.

Every change of status or transfer state goes through `FintectureSim.transition`, which records it
and emits exactly one webhook (when the app has a webhook URL) through the core's dispatcher. The
hosted page, the `/_sim` control API, the merchant's PATCH, refunds, payout transfers, expiry and
pending settlement all end there.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from types import EllipsisType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import Response

from simulator.clock import Clock, http_date
from simulator.config import AppConfig, SimulatorConfig
from simulator.core import Simulator
from simulator.errors import ApiError, error_response
from simulator.fintecture.sessions import (
    CANCELLABLE,
    DEMO_BANKS,
    EXPIRABLE,
    PAY_BY_BANK,
    PAYABLE,
    PAYOUT,
    REFUND,
    Session,
    Transition,
)
from simulator.fintecture.signing import webhook_headers
from simulator.fintecture.store import Store
from simulator.scheduler import Scheduler
from simulator.webhooks import Delivery, Dispatcher, Outgoing

Outcome = Literal["confirm", "confirm_received", "pending", "reject", "abandon"]
OUTCOMES: tuple[Outcome, ...] = ("confirm", "confirm_received", "pending", "reject", "abandon")

_ID_NAMESPACE = uuid.UUID("0d8e7f3a-2a51-4d0b-8f0f-7a6f1f3f0b1c")
DEMO_PAYEE_IBAN = "FR1420041010050500013M02606"


class OutcomeError(Exception):
    """The payer's (or a test's) action cannot apply to the session as it stands."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


_FAULT_CODES = {429: "too_many_requests", 500: "internal_server_error", 503: "service_unavailable"}


class FintectureSim:
    """Fintecture on the shared core: its applications, sessions and tokens."""

    name = "fintecture"
    api_prefixes: tuple[str, ...] = ("/oauth/", "/pis/")

    def __init__(self, core: Simulator) -> None:
        self.core = core
        self.store = Store()
        core.register(self)

    @property
    def config(self) -> SimulatorConfig:
        return self.core.config

    @property
    def clock(self) -> Clock:
        return self.core.clock

    @property
    def scheduler(self) -> Scheduler:
        return self.core.scheduler

    @property
    def webhooks(self) -> Dispatcher:
        return self.core.webhooks

    def reset(self) -> None:
        self.store.reset()

    def fault_response(self, status: int, headers: Mapping[str, str]) -> tuple[Response, str]:
        code = _FAULT_CODES[status]
        return error_response(ApiError(status, code, "injected by the simulator", headers=headers)), code

    def request_error(self, exc: Exception) -> Exception | None:
        return None  # the simulator's default error shape is Fintecture's (simulator/errors.py)

    def tick(self) -> None:
        self.core.tick()

    def app(self, app_id: str) -> AppConfig | None:
        return self.config.app(app_id)

    # Sessions
    def new_session(
        self, app: AppConfig, *, type: str, status: str, expiry_seconds: int, **fields: Any
    ) -> Session:
        now = self.clock.now()
        session_id = uuid.uuid4().hex
        session = Session(
            session_id=session_id,
            app_id=app.app_id,
            type=type,
            status=status,
            created_at=now,
            expires_at=now + timedelta(seconds=expiry_seconds),
            customer_id=fields.pop("customer_id", None) or uuid.uuid4().hex,
            end_to_end_id=fields.pop("end_to_end_id", None) or session_id,
            execution_date=fields.pop("execution_date", None) or now.date(),
            **fields,
        )
        session.history.append(Transition(now, status, session.transfer_state, "created"))
        self.store.add(session)
        if type != REFUND and status in EXPIRABLE:
            self.scheduler.at(session.expires_at, lambda: self._expire(session_id))
        return session

    def connect_url(self, session: Session) -> str:
        return f"{self.config.public_url}/connect/v2/{session.connect_id}"

    def transition(
        self,
        session: Session,
        status: str,
        transfer_state: str | EllipsisType | None = ...,
        *,
        source: str,
        provider: str | None = None,
        received_amount: str | None = None,
    ) -> Delivery | None:
        """Move a session; one webhook per change of status and/or transfer state, none otherwise."""
        if provider is not None:
            session.provider = provider
        if received_amount is not None:
            session.received_amount = received_amount
        new_transfer_state = (
            session.transfer_state if isinstance(transfer_state, EllipsisType) else transfer_state
        )
        status_changed = status != session.status
        if not status_changed and new_transfer_state == session.transfer_state:
            return None
        session.status = status
        session.transfer_state = new_transfer_state
        session.history.append(Transition(self.clock.now(), status, new_transfer_state, source))
        event = (
            f"payment_session.status.{status}"
            if status_changed
            else f"payment_session.transfer_states.{new_transfer_state}"
        )
        app = self.app(session.app_id)
        if app is None or not app.webhook_url:
            return None
        return self.webhooks.emit(_outgoing(app, app.webhook_url, webhook_fields(session, event)))

    def _expire(self, session_id: str) -> None:
        session = self.store.get(session_id)
        if session and session.status in EXPIRABLE and session.expires_at <= self.clock.now():
            self.transition(session, "payment_expired", source="expiry")

    def create_payout_payment(self, session: Session, *, source: str) -> None:
        """A payout's payment is created: its transfer executes at once, or on the clock after
        `payout_transfer_seconds` (transfer state `initiated` meanwhile, §6)."""
        delay = self.config.payout_transfer_seconds
        if delay <= 0:
            self.transition(session, "payment_created", "completed", source=source)
            return
        self.transition(session, "payment_created", "initiated", source=source)
        session_id = session.session_id
        self.scheduler.at(
            self.clock.now() + timedelta(seconds=delay), lambda: self._execute_payout(session_id)
        )

    def _execute_payout(self, session_id: str) -> None:
        session = self.store.get(session_id)
        if session and session.status == "payment_created" and session.transfer_state == "initiated":
            self.transition(session, "payment_created", "completed", source="bank")

    def _settle(self, session_id: str) -> None:
        session = self.store.get(session_id)
        if session and session.status == "payment_pending":
            self.transition(session, "payment_created", "completed", source="bank")

    def is_expired(self, session: Session) -> bool:
        """Past its expiry the payer can no longer act, even on a session left unsuccessful."""
        return session.status == "payment_expired" or (
            session.status in EXPIRABLE | PAYABLE and session.expires_at <= self.clock.now()
        )

    # What the payer does on the hosted page (or a test through /_sim/sessions/{id}/complete)
    def complete(
        self,
        session: Session,
        outcome: str,
        *,
        bank: str | None = None,
        iban: str | None = None,
        payee_name: str | None = None,
    ) -> str | None:
        """Apply the payer's choice; returns where the browser goes next (None: nowhere to go)."""
        self.tick()
        if session.type == REFUND:
            raise OutcomeError(409, "a refund has no hosted page")
        if outcome not in OUTCOMES:
            raise OutcomeError(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        if self.is_expired(session):
            raise OutcomeError(410, "the payment session has expired")
        if outcome == "abandon":
            return session.origin_uri or self.redirect_url(session)
        if session.type == PAYOUT:
            return self._complete_payout(session, outcome, iban=iban, payee_name=payee_name)
        if session.status not in PAYABLE:
            raise OutcomeError(409, f"the payment is already {session.status}")
        bank = bank or session.preselected_provider or "ftecfr"
        if bank not in DEMO_BANKS and bank != session.preselected_provider:
            raise OutcomeError(400, f"unknown bank {bank!r}")
        session.debtor_account_id = str(uuid.uuid5(_ID_NAMESPACE, f"debtor:{session.customer_id}:{bank}"))
        if outcome == "confirm":
            self.transition(session, "payment_created", "completed", source="payer", provider=bank)
        elif outcome == "confirm_received":
            self.transition(session, "payment_created", "received", source="payer", provider=bank)
        elif outcome == "pending":
            self.transition(session, "payment_pending", "pending", source="payer", provider=bank)
            session_id = session.session_id
            settle_at = self.clock.now() + timedelta(seconds=self.config.pending_settle_seconds)
            self.scheduler.at(settle_at, lambda: self._settle(session_id))
        else:
            self.transition(session, "payment_unsuccessful", "rejected", source="payer", provider=bank)
        return self.redirect_url(session)

    def _complete_payout(
        self, session: Session, outcome: str, *, iban: str | None, payee_name: str | None
    ) -> str | None:
        if outcome != "confirm":
            raise OutcomeError(400, "a payout page accepts only confirm or abandon")
        if session.status != "iban_required":
            raise OutcomeError(409, f"the payout is already {session.status}")
        session.beneficiary = {
            "name": payee_name or session.psu.get("psu_name") or "Payee",
            "iban": (iban or DEMO_PAYEE_IBAN).replace(" ", "").upper(),
            "swift_bic": "BNPAFRPPXXX",
        }
        self.transition(session, "iban_received", source="payee")
        self.create_payout_payment(session, source="payee")
        return self.redirect_url(session)

    def redirect_url(self, session: Session) -> str | None:
        """redirect_uri plus session_id, status, provider, customer_id, state (contract §7)."""
        if not session.redirect_uri:
            return None
        params = {
            "session_id": session.session_id,
            "status": session.status,
            "provider": session.provider,
            "customer_id": session.customer_id,
            "state": session.state,
        }
        parts = urlsplit(session.redirect_uri)
        query = parse_qsl(parts.query, keep_blank_values=True)
        query += [(name, value) for name, value in params.items() if value is not None]
        return urlunsplit(parts._replace(query=urlencode(query)))

    # Merchant-initiated changes
    def cancel(self, session: Session) -> None:
        if session.status not in CANCELLABLE:
            raise ApiError(400, "invalid_field", f"a payment in status {session.status} cannot be cancelled")
        self.transition(session, "payment_cancelled", source="merchant")

    def refund(
        self,
        app: AppConfig,
        original: Session,
        *,
        amount: str | None,
        communication: str | None,
        state: str | None,
    ) -> tuple[Session, str]:
        """Contract §9. Returns the refund session and `refund_accepted` or `refund_waiting`."""
        if original.type != PAY_BY_BANK:
            raise ApiError(400, "refund_aborted", "only a PayByBank payment can be refunded")
        if original.status != "payment_created":
            raise ApiError(400, "refund_aborted", f"the payment is {original.status}, not payment_created")
        if app.acquiring_account and original.transfer_state != "received":
            raise ApiError(400, "refund_aborted", "the funds have not been received on the payment account")
        requested = Decimal(amount) if amount is not None else original.decimal_amount
        already = self.store.refunded_total(original.session_id)
        if already + requested > original.decimal_amount:
            raise ApiError(
                400,
                "refund_aborted",
                f"refunds would total {already + requested} {original.currency}, "
                f"more than the payment's {original.amount} (already refunded: {already})",
            )
        refund = self.new_session(
            app,
            type=REFUND,
            status="session_initiated",
            expiry_seconds=self.config.default_expiry_seconds,
            amount=amount if amount is not None else original.amount,
            currency=original.currency,
            communication=communication,
            state=state,
            refunded_session_id=original.session_id,
            provider=original.provider,
            customer_id=original.customer_id,
            beneficiary={"name": original.psu.get("psu_name") or "Payer", "iban": None, "swift_bic": None},
        )
        if not app.acquiring_account:
            # An external account: the merchant confirms the refund (reverse PIS) outside the API.
            return refund, "refund_waiting"
        self.transition(refund, "payment_created", "completed", source="refund")
        return refund, "refund_accepted"


def webhook_fields(session: Session, event: str) -> dict[str, str]:
    """The form fields of a webhook body (contract §3), empty ones left out."""
    fields = {
        "session_id": session.session_id,
        "status": session.status,
        "customer_id": session.customer_id,
        "provider": session.provider,
        "state": session.state,
        "type": session.type,
        "transfer_state": session.transfer_state,
        "amount": session.amount,
        "received_amount": session.received_amount,
        "refunded_session_id": session.refunded_session_id,
        "event": event,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _outgoing(app: AppConfig, url: str, fields: dict[str, str]) -> Outgoing:
    """A form-encoded webhook (contract §3), signed afresh on each attempt with one X-Request-ID."""
    # quote_plus encoding: what the official Python SDK re-encodes to before hashing.
    body = urlencode(fields).encode()
    request_id = str(uuid.uuid4())

    def sign(now: datetime) -> tuple[str, dict[str, str]]:
        date = http_date(now)
        headers = webhook_headers(
            app_id=app.app_id, public_key=app.public_key, body=body, date=date, request_id=request_id
        )
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return date, headers

    return Outgoing(
        provider="fintecture",
        app_id=app.app_id,
        url=url,
        session_id=fields["session_id"],
        event=fields["event"],
        fields=fields,
        body=body,
        request_id=request_id,
        sign=sign,
    )


def new_connect_id() -> str:
    return str(uuid.uuid4())
