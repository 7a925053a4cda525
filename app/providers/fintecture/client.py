"""The Fintecture adapter: payment sessions, payment reads, refunds, payouts, webhooks and the
payer's (or payee's) return.

Wire contract: contracts/fintecture.md (§3 webhooks, §4 connect, §5 payment, §6 statuses,
§7 redirect, §8 request for payout, §9 refunds). Requests go through `FintectureTransport` (token,
signing, retries); what goes on the wire is built and read in `payloads`; the private key is parsed
once, by `build`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from app.logging_setup import get_logger
from app.providers.base import (
    PAYMENT_STATUS_OF_PAYOUT,
    Capabilities,
    CreatedPayout,
    CreatedRefund,
    CreatedSession,
    PaymentKind,
    PaymentSnapshot,
    PaymentStatus,
    PayoutRequest,
    PayoutStatus,
    ProviderContext,
    ProviderError,
    RefundRequest,
    ReturnHint,
    ReturnRejected,
    SessionRequest,
    WebhookHint,
    WebhookRequest,
)
from app.providers.fintecture import webhooks
from app.providers.fintecture.payloads import (
    MAX_SESSION_ID_LENGTH,
    MAX_STATE_LENGTH,
    PAYOUT_TYPE,
    SESSION_ID,
    PaymentRead,
    connect_request,
    connect_result,
    json_object,
    payment_read,
    payout_request,
    payout_result,
    refund_request,
    refund_result,
)
from app.providers.fintecture.settings import FintectureSettings
from app.providers.fintecture.signing import load_private_key
from app.providers.fintecture.statuses import map_payout_status, map_refund_status, map_status
from app.providers.fintecture.transport import FintectureTransport
from app.providers.transport import TransportOptions

log = get_logger(__name__)

CONNECT_PATH = "/pis/v2/connect"
PAYMENTS_PATH = "/pis/v2/payments"
REFUND_PATH = "/pis/v2/refund"
PAYOUT_PATH = "/pis/v2/request-for-payout"

CAPABILITIES = Capabilities(pay_in=True, refund=True, payout=True, cancel=True)


class FintectureProvider:
    """Fintecture PIS behind the provider contract. Safe for concurrent use."""

    name: str = "fintecture"
    capabilities: Capabilities = CAPABILITIES

    def __init__(
        self,
        transport: FintectureTransport,
        *,
        production: bool = False,
        webhook_tolerance_seconds: int = 300,
    ) -> None:
        if production and transport.private_key is None:
            raise ValueError("production requires a private key to sign requests")
        if production and transport.scheme != "https":
            raise ValueError("production requires an https Fintecture base URL")
        self.transport = transport
        self._production = production
        self._webhook_tolerance = webhook_tolerance_seconds

    def __repr__(self) -> str:  # never show the secret or the key
        return f"FintectureProvider({self.transport!r})"

    # --- Provider protocol ------------------------------------------------------------------------

    async def create_session(self, request: SessionRequest) -> CreatedSession:
        query, headers, body = connect_request(request)
        response = await self.transport.api(
            "POST", CONNECT_PATH, query=query, json_body=body, headers=headers
        )
        session_id, url = connect_result(json_object(response, "connect"), production=self._production)
        log.info("fintecture.session_created", session_id=session_id)
        return CreatedSession(provider_session_id=session_id, connect_url=url)

    async def get_payment(self, provider_session_id: str) -> PaymentSnapshot:
        body, read = await self._read(provider_session_id)
        if read.session_type == PAYOUT_TYPE:
            return self._payout_snapshot(provider_session_id, body, read)
        mapping = map_refund_status if read.is_refund else map_status
        status, reason = mapping(read.raw_status, read.transfer_state)
        if status is PaymentStatus.SUCCEEDED and (read.amount is None or read.currency is None):
            # Never report money as received without knowing how much.
            status, reason = PaymentStatus.NEEDS_REVIEW, "paid status without a readable amount and currency"
        return PaymentSnapshot(
            provider=self.name,
            provider_session_id=provider_session_id,
            status=status,
            raw_status=read.raw_status,
            transfer_state=read.transfer_state,
            amount=read.amount,
            currency=read.currency,
            communication=read.communication,
            kind=PaymentKind.REFUND if read.is_refund else PaymentKind.PAY_IN,
            customer_id=read.customer_id,
            bank_id=read.bank_id,
            review_reason=reason,
            raw=body,
            refunded_session_id=read.refunded_session_id,
        )

    async def get_payout(self, provider_payout_id: str) -> PaymentSnapshot:
        """A payout is a session like any other (§8): read with GET /pis/v2/payments/{id} and
        mapped with the payout table."""
        body, read = await self._read(provider_payout_id)
        return self._payout_snapshot(provider_payout_id, body, read)

    async def _read(self, provider_session_id: str) -> tuple[dict[str, Any], PaymentRead]:
        if not SESSION_ID.match(provider_session_id):
            raise ValueError("not a Fintecture session id")
        path = f"{PAYMENTS_PATH}/{quote(provider_session_id, safe='')}"
        try:
            response = await self.transport.api("GET", path)
        except ProviderError as exc:
            if exc.http_status == 404:
                raise ProviderError(
                    "Fintecture has no such payment session",
                    http_status=404,
                    code="not_found",
                    log_id=exc.log_id,
                    retryable=False,
                ) from exc
            raise
        body = json_object(response, "payment read", retryable=True)
        return body, payment_read(body, provider_session_id)

    def _payout_snapshot(
        self, provider_payout_id: str, body: dict[str, Any], read: PaymentRead
    ) -> PaymentSnapshot:
        status, reason = map_payout_status(read.raw_status, read.transfer_state)
        if read.session_type not in (None, PAYOUT_TYPE):
            status, reason = PayoutStatus.NEEDS_REVIEW, f"the provider reports a {read.session_type} session"
        if status is PayoutStatus.PAID and (read.amount is None or read.currency is None):
            # Never report money as sent without knowing how much.
            status, reason = PayoutStatus.NEEDS_REVIEW, "paid status without a readable amount and currency"
        return PaymentSnapshot(
            provider=self.name,
            provider_session_id=provider_payout_id,
            status=PAYMENT_STATUS_OF_PAYOUT[status],
            raw_status=read.raw_status,
            transfer_state=read.transfer_state,
            amount=read.amount,
            currency=read.currency,
            communication=read.communication,
            kind=PaymentKind.PAYOUT,
            customer_id=read.customer_id,
            bank_id=read.bank_id,
            review_reason=reason,
            raw=body,
            payout_status=status,
        )

    async def create_refund(self, request: RefundRequest) -> CreatedRefund:
        """§9: POST /pis/v2/refund with the paid session's id and the amount; sent once (a POST
        is never re-sent blindly). The refund is its own session, read later with `get_payment`."""
        query, body = refund_request(request)
        response = await self.transport.api("POST", REFUND_PATH, query=query, json_body=body)
        refund_id, raw_status = refund_result(json_object(response, "refund"))
        status, _ = map_refund_status(raw_status, None)
        log.info("fintecture.refund_created", session_id=refund_id, status=raw_status)
        return CreatedRefund(provider_refund_id=refund_id, raw_status=raw_status, status=status)

    async def create_payout(self, request: PayoutRequest) -> CreatedPayout:
        """§8: POST /pis/v2/request-for-payout; sent once (a POST is never re-sent blindly).
        Without a beneficiary the answer is the payee's link (the payee gives an IBAN there); with
        a verified beneficiary, the payment's status and transfer state at once."""
        query, headers, body = payout_request(request)
        response = await self.transport.api("POST", PAYOUT_PATH, query=query, json_body=body, headers=headers)
        created = payout_result(json_object(response, "request for payout"), production=self._production)
        if created.raw_status is not None:
            status, reason = map_payout_status(created.raw_status, created.transfer_state)
        else:  # a link for the payee: they give their account next
            status, reason = PayoutStatus.AWAITING_PAYEE, None
        log.info("fintecture.payout_created", session_id=created.session_id, status=created.raw_status)
        return CreatedPayout(
            provider_payout_id=created.session_id,
            payee_url=created.url,
            status=status,
            raw_status=created.raw_status,
            transfer_state=created.transfer_state,
            review_reason=reason,
        )

    def verify_webhook(self, request: WebhookRequest, now: datetime) -> WebhookHint:
        return webhooks.verify_webhook(
            request,
            private_key=self.transport.private_key,
            app_id=self.transport.app_id,
            now=now,
            tolerance_seconds=self._webhook_tolerance,
        )

    def parse_return(self, query: Mapping[str, str]) -> ReturnHint:
        """The payer's (or a payout's payee's) return (§7, §8): `state` and `session_id`. The
        `status` it carries is ignored."""
        state = query.get("state")
        session_id = query.get("session_id")
        if (
            not state
            or not session_id
            or len(state) > MAX_STATE_LENGTH
            or len(session_id) > MAX_SESSION_ID_LENGTH
        ):
            raise ReturnRejected("the payment link is incomplete")
        return ReturnHint(state=state, provider_session_id=session_id)


def build(settings: FintectureSettings, context: ProviderContext) -> FintectureProvider:
    """The adapter for these settings; parses the private key (once per process). Raises ValueError."""
    pem = settings.private_key.get_secret_value().strip()
    if not settings.app_secret.get_secret_value():
        raise ValueError("FINTECTURE_APP_SECRET is required when FINTECTURE_APP_ID is set")
    try:
        private_key = load_private_key(pem) if pem else None
    except ValueError as exc:
        raise ValueError(f"FINTECTURE_PRIVATE_KEY: {exc}") from None
    transport = FintectureTransport(
        context.http,
        app_id=settings.app_id,
        app_secret=settings.app_secret.get_secret_value(),
        base_url=settings.base_url(context.production),
        private_key=private_key,
        options=TransportOptions(timeout_seconds=context.timeout_seconds, max_retries=context.max_retries),
    )
    return FintectureProvider(
        transport, production=context.production, webhook_tolerance_seconds=settings.webhook_tolerance_seconds
    )
