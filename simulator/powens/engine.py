"""Powens Pay's behaviour: tokens, payments moving through their states, and what each move emits.

Every change of a payment's `state` goes through `PowensSim.transition`, which records it and
emits one `PAYMENT_STATE_UPDATED` webhook (when the client has a webhook URL) through the core's
dispatcher. The webview (the payer), the test connector's label scenario (phases on the clock),
the merchant's cancel and the `/_sim` knobs all end there.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import Response

from simulator.clock import Clock
from simulator.config import PowensAppConfig, SimulatorConfig
from simulator.core import Simulator
from simulator.powens.errors import PowensError, error_response, from_framework
from simulator.powens.payments import (
    CURRENCIES,
    DEFAULT_SCENARIO,
    SCENARIO_CODES,
    TEST_CONNECTOR_UUID,
    Instruction,
    Payment,
    Transition,
    dumps,
    parse_scenario,
    plan,
)
from simulator.powens.signing import bi_signature, endpoint_path, signature_date
from simulator.scheduler import Scheduler
from simulator.webhooks import Delivery, Dispatcher, Outgoing

API_PREFIX = "/powens/2.0"
WEBVIEW_PREFIX = "/powens/webview"

ADMIN_SCOPES = frozenset({"payments:admin", "payments"})  # `payments` is the deprecated alias
SERVICE_SCOPES = frozenset(
    {
        "payments:admin",
        "payments:read-only",
        "payments:allow-sensitive",
        "payments:validate",
        "payments:cancel",
        "payments",
        "payment-links:admin",
    }
)
SCOPED_TOKEN_SCOPES = SERVICE_SCOPES - ADMIN_SCOPES - {"payment-links:admin"}

Outcome = Literal["validate", "cancel", "abandon", "confirm_cancel", "refuse_cancel"]
OUTCOMES: tuple[Outcome, ...] = ("validate", "cancel", "abandon", "confirm_cancel", "refuse_cancel")

_DESCRIPTIONS = {
    "CancelledByUser": "The payer cancelled the payment",
    "cancelledByUser": "The payment was cancelled",
    "noSpecifiedReason": "The bank rejected the payment",
    "invalidAmount": "The bank rejected the payment's amount",
    "bug": "An error occurred while initiating the payment",
}
# The API's immediate cancel, as the cancelling guide shows it (lower-case c).
API_CANCEL_CODE = "cancelledByUser"
WEBVIEW_CANCEL_CODE = "CancelledByUser"


class OutcomeError(Exception):
    """The payer's (or a test's) action cannot apply to the payment as it stands."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Token:
    value: str
    client_id: str
    scopes: frozenset[str]
    expires_at: datetime
    payment_id: int | None = None  # a payment-scoped token

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))


def _id_counter() -> itertools.count[int]:
    """Integer ids that a restarted simulator does not reuse (the service may have stored some)."""
    return itertools.count(100_000 + secrets.randbelow(900_000_000))


def with_query(url: str, params: Mapping[str, str | int | None]) -> str:
    parts = urlsplit(url)
    query = [(name, str(value)) for name, value in params.items() if value is not None]
    extra = urlencode(query)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


class PowensSim:
    """Powens Pay on the shared core: its clients, tokens and payments."""

    name = "powens"
    api_prefixes: tuple[str, ...] = (API_PREFIX + "/",)

    def __init__(self, core: Simulator) -> None:
        self.core = core
        self.tokens: dict[str, Token] = {}
        self.payments: dict[int, Payment] = {}
        self._cancel_keys: dict[str, int] = {}
        self._payment_ids = _id_counter()
        self._other_ids = _id_counter()
        self._webhook_ids = _id_counter()
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

    @property
    def api_url(self) -> str:
        return self.config.public_url + API_PREFIX

    @property
    def webview_url(self) -> str:
        return self.config.public_url + WEBVIEW_PREFIX

    def app(self, client_id: str) -> PowensAppConfig | None:
        return self.config.powens_app(client_id)

    def tick(self) -> None:
        self.core.tick()

    def reset(self) -> None:
        self.tokens.clear()
        self.payments.clear()
        self._cancel_keys.clear()

    def fault_response(self, status: int, headers: Mapping[str, str]) -> tuple[Response, str]:
        error = PowensError(status, _FAULT_CODES[status], "injected by the simulator", headers=headers)
        return error_response(error), error.code

    def request_error(self, exc: Exception) -> Exception | None:
        return from_framework(exc)

    # Tokens
    def issue_token(
        self, client_id: str, scopes: frozenset[str], ttl_seconds: int, payment_id: int | None = None
    ) -> Token:
        token = Token(
            value=secrets.token_urlsafe(32),
            client_id=client_id,
            scopes=scopes,
            expires_at=self.clock.now() + timedelta(seconds=ttl_seconds),
            payment_id=payment_id,
        )
        self.tokens[token.value] = token
        return token

    def live_token(self, value: str) -> Token | None:
        token = self.tokens.get(value)
        return token if token is not None and token.expires_at > self.clock.now() else None

    # Payments
    def new_payment(self, app: PowensAppConfig, request: Any) -> Payment:
        """A `created` payment from a validated PaymentInitRequest (simulator.powens.schemas)."""
        [instruction] = request.instructions
        now = self.clock.now()
        payment = Payment(
            id=next(self._payment_ids),
            client_id=app.client_id,
            state="created",
            register_date=now,
            instruction=Instruction(
                id=next(self._other_ids),
                label=instruction.label,
                amount=instruction.amount,
                currency=instruction.currency,
                execution_date_type=instruction.execution_date_type,
                execution_date=instruction.execution_date,
                beneficiary={
                    "id": next(self._other_ids),
                    **instruction.beneficiary.model_dump(mode="json"),
                    "bic": instruction.beneficiary.issuer,
                },
                beneficiary_identity=_dump(instruction.beneficiary_identity),
                reference_id=instruction.reference_id or secrets.token_hex(8).upper(),
            ),
            client_redirect_uri=request.client_redirect_uri,
            client_state=request.client_state,
            payer=_dump(request.payer),
            payer_identity=_dump(request.payer_identity),
            operator_identity=_dump(request.operator_identity),
            connector_uuid=request.connector_uuid,
        )
        payment.history.append(Transition(now, "created", None, None, "created"))
        self.payments[payment.id] = payment
        return payment

    def own_payment(self, client_id: str, payment_id: str | int) -> Payment | None:
        try:
            payment = self.payments.get(int(payment_id))
        except ValueError:
            return None
        return payment if payment is not None and payment.client_id == client_id else None

    def transition(
        self,
        payment: Payment,
        state: str,
        *,
        source: str,
        error_code: str | None = None,
        error_description: str | None = None,
        state_detail: str | None = None,
    ) -> Delivery | None:
        """Move a payment; one webhook per change of `state`, none otherwise."""
        before = (payment.state, payment.state_detail, payment.error_code)
        state_changed = state != payment.state
        payment.set_state(state)
        payment.state_detail = state_detail
        payment.error_code = error_code
        payment.error_description = error_description or (_DESCRIPTIONS.get(error_code or ""))
        if error_code and not payment.error_description:
            payment.error_description = error_code
        if state == "validating":
            payment.action = "redirect"
            payment.validate_uri = f"{self.webview_url}/bank/{payment.id}"
        elif state_detail != "cancelling":
            payment.action = payment.validate_uri = None
        if payment.is_final:
            payment.cancel_key = None
        if (state, state_detail, error_code) != before:
            payment.history.append(Transition(self.clock.now(), state, state_detail, error_code, source))
        return self._emit(payment) if state_changed else None

    def _emit(self, payment: Payment) -> Delivery | None:
        app = self.app(payment.client_id)
        if app is None or not app.webhook_url or not app.webhook_secret:
            return None
        return self.webhooks.emit(
            _outgoing(app, app.webhook_url, app.webhook_secret, payment, self._webhook_ids)
        )

    # The test connector
    def _apply_code(self, payment: Payment, code: str) -> None:
        state, error_code = SCENARIO_CODES[code]
        # Staying pending keeps a cancellation that waits for the payer's consent.
        detail = payment.state_detail if state == payment.state == "pending" else None
        self.transition(payment, state, source="bank", error_code=error_code, state_detail=detail)

    def _step(self, payment_id: int, generation: int, code: str) -> None:
        payment = self.payments.get(payment_id)
        if payment is None or payment.generation != generation or payment.is_final:
            return
        self._apply_code(payment, code)

    def scenario_of(self, payment: Payment, scenario: str | None) -> tuple[str, ...]:
        if scenario is None:
            return parse_scenario(payment.instruction.label) or DEFAULT_SCENARIO
        codes = parse_scenario(scenario)
        if codes is None:
            raise OutcomeError(
                400,
                "scenario must be one to three of " + ", ".join(SCENARIO_CODES) + " separated by /",
            )
        return codes

    def _validate(self, payment: Payment, scenario: str | None) -> list[str]:
        """The payer confirms at the test bank: the scenario's first phase now, the others later."""
        steps = plan(self.scenario_of(payment, scenario))
        payment.connector_uuid = payment.connector_uuid or TEST_CONNECTOR_UUID
        payment.validate_mechanism = "webview"
        payment.generation += 1
        now = self.clock.now()
        phase = self.config.powens_phase_seconds.for_type(payment.instruction.execution_date_type)
        payment.steps = [(now + timedelta(seconds=phase * index), code) for index, code in enumerate(steps)]
        if steps[0] != "bug":  # a bug is an error during initiation: the payer never reaches the bank
            self.transition(payment, "validating", source="payer")
        self._apply_code(payment, steps[0])
        payment_id, generation = payment.id, payment.generation
        for due, code in payment.steps[1:]:
            self.scheduler.at(due, functools.partial(self._step, payment_id, generation, code))
        return steps

    # What the payer does in the webview (or a test through /_sim/powens/payments/{id}/complete)
    def complete(
        self, payment: Payment, outcome: str, *, scenario: str | None = None, redirect_uri: str | None = None
    ) -> str | None:
        """Apply the payer's choice; returns where the browser goes next (None: nowhere).

        `redirect_uri` is the webview's, used for a cancellation or an error in the webview; after
        the bank step the payer goes to the payment's `client_redirect_uri`.
        """
        self.tick()
        if outcome not in OUTCOMES:
            raise OutcomeError(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        if outcome in {"confirm_cancel", "refuse_cancel"}:
            return self._answer_cancel(payment, confirm=outcome == "confirm_cancel")
        if outcome == "abandon":
            return None
        if payment.state != "created":
            raise OutcomeError(409, f"the payment is already {payment.state}")
        webview_redirect = redirect_uri or payment.client_redirect_uri
        callback: dict[str, str | int | None] = {"state": payment.client_state, "id_payment": payment.id}
        if outcome == "cancel":
            payment.generation += 1
            self.transition(payment, "rejected", source="payer", error_code=WEBVIEW_CANCEL_CODE)
            return with_query(
                webview_redirect, {**callback, "error": "cancelled", "error_code": payment.error_code}
            )
        steps = self._validate(payment, scenario)
        if steps[0] == "bug":
            return with_query(webview_redirect, {**callback, "error_code": payment.error_code})
        return with_query(
            payment.client_redirect_uri,
            {**callback, "payment_state": payment.state, "error_code": payment.error_code},
        )

    # Cancelling (contract §6)
    def cancel(self, payment: Payment, *, redirect_uri: str | None, state: str | None) -> None:
        self.tick()
        if payment.state == "created":
            payment.generation += 1
            self.transition(payment, "rejected", source="merchant", error_code=API_CANCEL_CODE)
            return
        if payment.state == "pending" and payment.instruction.execution_date_type != "instant":
            if payment.state_detail == "cancelling":
                return
            key = secrets.token_urlsafe(24)
            self._cancel_keys[key] = payment.id
            payment.cancel_key = key
            payment.cancel_redirect_uri = redirect_uri or payment.client_redirect_uri
            payment.cancel_state = state if state is not None else payment.client_state
            self.transition(
                payment,
                "pending",
                source="merchant",
                state_detail="cancelling",
                error_code=payment.error_code,
                error_description=payment.error_description,
            )
            payment.action = "redirect"
            payment.validate_uri = f"{self.webview_url}/cancel/{key}"
            return
        kind = " instant" if payment.instruction.execution_date_type == "instant" else ""
        raise PowensError(
            400, "notSupported", f"Bad request, a{kind} payment in state {payment.state} cannot be cancelled"
        )

    def by_cancel_key(self, key: str) -> Payment | None:
        payment_id = self._cancel_keys.get(key)
        payment = self.payments.get(payment_id) if payment_id is not None else None
        return payment if payment is not None and payment.cancel_key == key else None

    def _answer_cancel(self, payment: Payment, *, confirm: bool) -> str | None:
        if payment.state != "pending" or payment.state_detail != "cancelling":
            raise OutcomeError(409, f"no cancellation is waiting: the payment is {payment.state}")
        redirect = payment.cancel_redirect_uri or payment.client_redirect_uri
        callback: dict[str, str | int | None] = {"state": payment.cancel_state, "id_payment": payment.id}
        payment.cancel_key = None
        if confirm:
            payment.generation += 1
            self.transition(payment, "rejected", source="payer", error_code=API_CANCEL_CODE)
        else:
            self.transition(payment, "pending", source="payer")
        return with_query(
            redirect, {**callback, "payment_state": payment.state, "error_code": payment.error_code}
        )

    # /_sim knobs
    def force_state(
        self,
        payment: Payment,
        state: str,
        *,
        error_code: str | None,
        error_description: str | None,
        state_detail: str | None,
    ) -> Delivery | None:
        """Any state, even out of a final one; what is left of the label scenario is dropped."""
        self.tick()
        payment.generation += 1
        if state == "rejected" and error_code is None:
            error_code = "noSpecifiedReason"
        return self.transition(
            payment,
            state,
            source="control",
            error_code=error_code,
            error_description=error_description,
            state_detail=state_detail,
        )

    def webview_link(self, payment: Payment, lang: str = "en") -> str | None:
        """A ready-made webview URL with the payment's latest scoped token, as the merchant builds it."""
        app = self.app(payment.client_id)
        token = self.live_token(payment.scoped_token) if payment.scoped_token else None
        if app is None or token is None:
            return None
        return with_query(
            f"{self.webview_url}/{lang}/payment",
            {
                "domain": f"{app.domain}.biapi.pro",
                "client_id": app.client_id,
                "redirect_uri": payment.client_redirect_uri,
                "code": token.value,
                "payment_id": payment.id,
                "state": payment.client_state,
            },
        )

    def control_json(self, payment: Payment) -> dict[str, Any]:
        """Everything the simulator knows about a payment (GET /_sim/powens/payments/{id})."""
        return {
            **json.loads(dumps(payment.resource(sensitive=True))),
            "client_id": payment.client_id,
            "scenario": [{"due": due.isoformat(), "code": code} for due, code in payment.steps],
            "webview_url": self.webview_link(payment),
            "history": [step.to_json() for step in payment.history],
        }


_FAULT_CODES = {429: "tooManyRequests", 500: "internalServerError", 503: "serviceUnavailable"}


def _dump(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return dumped


def _outgoing(
    app: PowensAppConfig, url: str, secret: str, payment: Payment, ids: itertools.count[int]
) -> Outgoing:
    """One PAYMENT_STATE_UPDATED delivery: the Payment resource plus `id_webhook_data`."""
    id_webhook_data = next(ids)
    body = dumps({**payment.resource(sensitive=False), "id_webhook_data": id_webhook_data})
    content = gzip.compress(body, mtime=0) if app.webhook_gzip else None
    path = endpoint_path(url)

    def sign(now: datetime) -> tuple[str, dict[str, str]]:
        date = signature_date(now)
        headers = {
            "Content-Type": "application/json",
            "BI-Signature-Date": date,
            # The HMAC covers the JSON payload, not the gzip bytes that carry it.
            "BI-Signature": bi_signature(secret, method="POST", path=path, date=date, payload=body),
        }
        if content is not None:
            headers["Content-Encoding"] = "gzip"
        return date, headers

    return Outgoing(
        provider="powens",
        app_id=app.client_id,
        url=url,
        session_id=str(payment.id),
        event="PAYMENT_STATE_UPDATED",
        fields=json.loads(body),
        body=body,
        request_id=str(id_webhook_data),
        sign=sign,
        content=content,
        extra={
            "payment_id": payment.id,
            "id_webhook_data": id_webhook_data,
            "content_encoding": "gzip" if content is not None else None,
        },
    )


def check_amount(app: PowensAppConfig, amount: Decimal, currency: str) -> None:
    """The currency's precision and the client's maximum amount (`payment.max_amount`)."""
    known = CURRENCIES.get(currency)
    if known is None:
        raise PowensError(
            400, "invalidValue", f"Bad request, currency {currency} is not one of {', '.join(CURRENCIES)}"
        )
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > known["precision"]:
        raise PowensError(
            400, "invalidValue", f"Bad request, amount {amount} has more decimals than {currency} allows"
        )
    if app.max_amount is not None and amount > app.max_amount:
        raise PowensError(
            400,
            "invalidAmount",
            f"Bad request, the amount {amount} {currency} is above this client's maximum amount "
            f"per payment ({app.max_amount})",
        )
