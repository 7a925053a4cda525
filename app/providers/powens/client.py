"""The Powens Pay adapter: payments, the webview URL, payment reads, cancels, webhooks and the
payer's return.

Wire contract: contracts/powens.md (§1 auth, §2 create, §3 webview and callback, §4 payment and
states, §5 webhooks, §6 cancel). Requests go through `PowensTransport` (token, retries); what goes
on the wire is built and read in `payloads`; the status table is `statuses`; webhook verification
is `webhooks`.

Opening a session is three calls: `POST /payments` (never re-sent when it may have arrived),
`POST /payments/{id}/scopedtoken` (scope `payments:validate`; minting a token has no side effect,
so it is retried like a read), then the webview URL is built locally from that token. When the
scoped token cannot be had the payment stays `created` at Powens, where nobody can validate it,
and the session fails here.

Uncertain readings chosen here (see also the other modules' docstrings):

- `provider_session_id` is the payment's integer `id` as decimal digits.
- The snapshot's `transfer_state` is the payment's `error_code` (None when it has none): it is the
  only per-payment detail beside `state` that tells why a payment stopped, and the core keeps it
  beside the normalised status. `state_detail` is not reported separately (it does not change the
  status); it stays in `raw`.
- WV says the webview `code` must carry the `payments` scope while the guides use a
  `payments:validate` scoped token [?]: the scoped token is used.
- The webview's `redirect_uri` is the same callback URL as `client_redirect_uri`, as WV advises.
- The return's `payment_state` (and `error`, `error_code`) are never trusted for the status: the
  payment is read from the API.
- Cancel sends `client_redirect_uri` (our callback) and, when known, the session's `client_state`,
  so a cancel that needs the payer's consent comes back through the callback like a payment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.logging_setup import get_logger
from app.providers.base import (
    Capabilities,
    CreatedPayout,
    CreatedRefund,
    CreatedSession,
    PaymentKind,
    PaymentSnapshot,
    PaymentStatus,
    PayoutRequest,
    ProviderContext,
    ProviderError,
    RefundRequest,
    ReturnHint,
    ReturnRejected,
    SessionRequest,
    WebhookHint,
    WebhookRequest,
)
from app.providers.powens import webhooks
from app.providers.powens.payloads import (
    MAX_PAYMENT_ID_LENGTH,
    MAX_STATE_LENGTH,
    PAYMENT_ID,
    SCOPED_TOKEN_BODY,
    check_redirect_uri,
    create_payment_body,
    json_object,
    payment_id,
    payment_read,
    scoped_token,
    webview_url,
)
from app.providers.powens.settings import PowensSettings
from app.providers.powens.statuses import map_status
from app.providers.powens.transport import PowensTransport
from app.providers.transport import TransportOptions

log = get_logger(__name__)

PAYMENTS_PATH = "/payments"

CAPABILITIES = Capabilities(pay_in=True, refund=False, payout=False, cancel=True)

# What a return's optional error fields may look like (they are only reported, never trusted).
_RETURN_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class PowensProvider:
    """Powens Pay behind the provider contract. Safe for concurrent use."""

    name: str = "powens"
    capabilities: Capabilities = CAPABILITIES

    def __init__(
        self,
        transport: PowensTransport,
        *,
        domain: str,
        webview_base_url: str,
        beneficiary_iban: str,
        beneficiary_name: str,
        callback_url: str,
        webhook_secret: bytes | None = None,
        webhook_tolerance_seconds: int = 600,
        language: str = "fr",
        production: bool = False,
    ) -> None:
        if production and transport.scheme != "https":
            raise ValueError("production requires an https Powens API URL")
        if production and not webview_base_url.startswith("https://"):
            raise ValueError("production requires an https Powens webview URL")
        if not domain:
            raise ValueError("a Powens domain is required")
        if not beneficiary_iban or not beneficiary_name:
            raise ValueError("the beneficiary IBAN and name are required")
        self.transport = transport
        self._domain = domain if domain.endswith(".biapi.pro") else f"{domain}.biapi.pro"
        self._webview_base = webview_base_url.rstrip("/")
        self._iban = beneficiary_iban
        self._beneficiary_name = beneficiary_name
        self._callback_url = callback_url
        self._webhook_secret = webhook_secret or None
        self._webhook_tolerance = webhook_tolerance_seconds
        self._language = language
        self._production = production

    def __repr__(self) -> str:  # never show the secrets
        return f"PowensProvider({self.transport!r}, domain={self._domain!r})"

    # --- Provider protocol ------------------------------------------------------------------------

    async def create_session(self, request: SessionRequest) -> CreatedSession:
        body = create_payment_body(
            request, beneficiary_iban=self._iban, beneficiary_name=self._beneficiary_name
        )
        created = await self.transport.api("POST", PAYMENTS_PATH, json_body=body)
        paid_id = payment_id(json_object(created, "payment creation"), "payment creation")
        log.info("powens.payment_created", payment_id=paid_id)
        answer = await self.transport.api(
            "POST", f"{PAYMENTS_PATH}/{paid_id}/scopedtoken", json_body=SCOPED_TOKEN_BODY, idempotent=True
        )
        code = scoped_token(json_object(answer, "scoped token", retryable=True), paid_id)
        url = webview_url(
            self._webview_base,
            language=self._language,
            domain=self._domain,
            client_id=self.transport.client_id,
            redirect_uri=request.redirect_uri,
            code=code,
            payment_id=paid_id,
            state=request.state,
        )
        return CreatedSession(provider_session_id=str(paid_id), connect_url=url)

    async def create_refund(self, request: RefundRequest) -> CreatedRefund:
        """Powens Pay has no refund API (`capabilities.refund` is False): nothing is sent."""
        raise ProviderError("Powens Pay cannot refund a payment", code="not_supported")

    async def create_payout(self, request: PayoutRequest) -> CreatedPayout:
        """Powens Pay has no payout API (`capabilities.payout` is False): nothing is sent."""
        raise ProviderError("Powens Pay cannot pay a payee out", code="not_supported")

    async def get_payout(self, provider_payout_id: str) -> PaymentSnapshot:
        """Powens Pay has no payouts to read (`capabilities.payout` is False): nothing is sent."""
        raise ProviderError("Powens Pay has no payouts", code="not_supported")

    async def get_payment(self, provider_session_id: str) -> PaymentSnapshot:
        paid_id = self._payment_id(provider_session_id)
        try:
            response = await self.transport.api("GET", f"{PAYMENTS_PATH}/{paid_id}")
        except ProviderError as exc:
            raise self._not_found(exc) from exc
        return self._snapshot(provider_session_id, json_object(response, "payment read", retryable=True))

    def verify_webhook(self, request: WebhookRequest, now: datetime) -> WebhookHint:
        return webhooks.verify_webhook(
            request, secret=self._webhook_secret, now=now, tolerance_seconds=self._webhook_tolerance
        )

    def parse_return(self, query: Mapping[str, str]) -> ReturnHint:
        """The payer's return (§3): `state` and `id_payment`, optionally `error=cancelled`,
        `error_code` and `payment_state`. Only `state` and the id bind it to a session; the rest is
        never trusted (the payment is read from the API)."""
        state = query.get("state")
        id_payment = query.get("id_payment")
        if not state or len(state) > MAX_STATE_LENGTH:
            raise ReturnRejected("the payment link is incomplete")
        if not id_payment or len(id_payment) > MAX_PAYMENT_ID_LENGTH or not PAYMENT_ID.match(id_payment):
            raise ReturnRejected("the payment link is incomplete")
        error = _return_token(query.get("error_code")) or _return_token(query.get("error"))
        return ReturnHint(state=state, provider_session_id=id_payment, error=error)

    # --- Beyond the protocol ----------------------------------------------------------------------

    async def cancel_payment(self, provider_session_id: str, *, state: str | None = None) -> PaymentSnapshot:
        """Ask Powens to cancel the payment (§6) and return what it says about it afterwards.

        Allowed on `created` payments, and on `pending` non-instant ones where the bank supports it;
        Powens answers `notSupported` (a ProviderError) otherwise. A cancel needing the payer's
        consent leaves the payment `pending` with `state_detail: cancelling`. The POST is never
        re-sent when it may have arrived.
        """
        paid_id = self._payment_id(provider_session_id)
        body: dict[str, Any] = {"cancel": True, "client_redirect_uri": check_redirect_uri(self._callback_url)}
        if state:
            if len(state) > MAX_STATE_LENGTH:
                raise ValueError(f"state must be at most {MAX_STATE_LENGTH} characters")
            body["client_state"] = state
        try:
            response = await self.transport.api("POST", f"{PAYMENTS_PATH}/{paid_id}", json_body=body)
        except ProviderError as exc:
            raise self._not_found(exc) from exc
        log.info("powens.payment_cancel_requested", payment_id=paid_id)
        try:
            return self._snapshot(provider_session_id, json_object(response, "payment cancel"))
        except ProviderError:
            # The answer is not a readable payment: ask for it.
            return await self.get_payment(provider_session_id)

    # --- Helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _payment_id(provider_session_id: str) -> int:
        if not PAYMENT_ID.match(provider_session_id):
            raise ValueError("not a Powens payment id")
        return int(provider_session_id)

    @staticmethod
    def _not_found(exc: ProviderError) -> ProviderError:
        if exc.http_status == 404:
            return ProviderError(
                "Powens has no such payment",
                http_status=404,
                code="not_found",
                log_id=exc.log_id,
                retryable=False,
            )
        return exc

    def _snapshot(self, provider_session_id: str, body: dict[str, Any]) -> PaymentSnapshot:
        read = payment_read(body, int(provider_session_id))
        status, reason = map_status(read.state, read.state_detail, read.error_code)
        if status is PaymentStatus.SUCCEEDED and (read.amount is None or read.currency is None):
            # Never report money as received without knowing how much.
            status, reason = PaymentStatus.NEEDS_REVIEW, "paid status without a readable amount and currency"
        return PaymentSnapshot(
            provider=self.name,
            provider_session_id=provider_session_id,
            status=status,
            raw_status=read.state,
            transfer_state=read.error_code,
            amount=read.amount,
            currency=read.currency,
            communication=read.label,
            kind=PaymentKind.PAY_IN,
            bank_id=read.connector_uuid,
            review_reason=reason,
            raw=body,
        )


def _return_token(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if _RETURN_TOKEN.match(value) else None


def build(settings: PowensSettings, context: ProviderContext) -> PowensProvider:
    """The adapter for these settings. Raises ValueError when they cannot work."""
    secret = settings.client_secret.get_secret_value()
    if not secret:
        raise ValueError("POWENS_CLIENT_SECRET is required when POWENS_CLIENT_ID is set")
    if not settings.domain:
        raise ValueError("POWENS_DOMAIN is required when POWENS_CLIENT_ID is set")
    if not settings.beneficiary_name:
        raise ValueError("POWENS_BENEFICIARY_NAME is required when POWENS_CLIENT_ID is set")
    transport = PowensTransport(
        context.http,
        client_id=settings.client_id,
        client_secret=secret,
        base_url=settings.base_url(),
        options=TransportOptions(timeout_seconds=context.timeout_seconds, max_retries=context.max_retries),
    )
    webhook_secret = settings.webhook_secret.get_secret_value()
    return PowensProvider(
        transport,
        domain=settings.domain,
        webview_base_url=settings.webview_base_url(),
        beneficiary_iban=settings.compact_iban(),
        beneficiary_name=settings.beneficiary_name,
        callback_url=context.callback_url,
        webhook_secret=webhook_secret.encode("utf-8") if webhook_secret else None,
        webhook_tolerance_seconds=settings.webhook_tolerance_seconds,
        language=settings.language,
        production=context.production,
    )
