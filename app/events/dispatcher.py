"""The dispatcher: delivers outbound events to the merchant's endpoints, signed per Standard Webhooks.

Each pass routes new events (one delivery per endpoint), then claims due deliveries with a lease in
a short transaction, sends them with no transaction open, and records each outcome in another short
transaction. Delivery is at least once: a process that dies mid-send leaves a lease that runs out,
and the event is sent again with the same `webhook-id`, which receivers deduplicate on.

- In order per stream (an order with its refunds, or a payout): only the first pending delivery of
  each (endpoint, stream) is claimable, so a later event waits until the earlier one is delivered
  or parked.
- Failures back off exponentially (`retry_base * 2^(attempts-1)`, capped at `retry_max`); after
  `max_attempts` the delivery is parked until an operator replays it.
- Safe in several processes: claims use SKIP LOCKED and leases, like the webhook inbox.
- Prompt: a commit that recorded an event in this process wakes the loop at once (an ORM session
  hook, or `wake()` from a writer that records with its own statement); the poll remains for
  events other processes record and for retries falling due.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, UOWTransaction
from standardwebhooks import Webhook

from app.config import Settings
from app.db import transaction
from app.events import repository
from app.events.outbox import PAYLOAD_VERSION
from app.logging_setup import get_logger
from app.models import DeliveryStatus, OutboundEvent
from app.payments.workers import FailureBackoff

log = get_logger(__name__)

USER_AGENT = "checkout-webhooks/1"
_MAX_ERROR = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


def body_of(claimed: repository.ClaimedDelivery) -> str:
    """The versioned JSON payload, the same bytes on every attempt."""
    return json.dumps(
        {
            "id": claimed.webhook_id,
            "type": claimed.event_type,
            "version": PAYLOAD_VERSION,
            "timestamp": claimed.event_created_at.astimezone(UTC).isoformat(),
            "data": claimed.data,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def signed_headers(signer: Webhook, webhook_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt (a fresh timestamp each time)."""
    at = at.replace(microsecond=0)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signer.sign(webhook_id, at, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


@dataclass
class DispatchResult:
    routed: int = 0
    delivered: int = 0
    retried: int = 0
    parked: int = 0


class OutboxDispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        endpoints: Mapping[str, str],
        *,
        timeout: float = 10.0,
        max_attempts: int = 20,
        retry_base: float = 10.0,
        retry_max: float = 3600.0,
        lease: timedelta = timedelta(seconds=60),
        concurrency: int = 8,
        poll_seconds: float = 1.0,
    ) -> None:
        """`endpoints` maps each URL to its Standard Webhooks secret (`whsec_...`)."""
        self.sessionmaker = sessionmaker
        self.signers = {url: Webhook(secret) for url, secret in endpoints.items()}
        self.endpoints = list(self.signers)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_max = retry_max
        # A send always ends before its lease does, so a live process keeps what it claimed.
        self.lease = max(lease, timedelta(seconds=timeout + 5))
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._engine: Engine | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> OutboxDispatcher:
        return cls(
            sessionmaker,
            {url: secret.get_secret_value() for url, secret in settings.merchant_webhook_urls.items()},
            timeout=settings.merchant_webhook_timeout_seconds,
            max_attempts=settings.merchant_webhook_max_attempts,
            retry_base=settings.merchant_webhook_retry_base_seconds,
            retry_max=settings.merchant_webhook_retry_max_seconds,
            lease=timedelta(seconds=settings.merchant_webhook_lease_seconds),
            concurrency=settings.merchant_webhook_concurrency,
            poll_seconds=settings.merchant_webhook_poll_seconds,
        )

    def retry_in(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt."""
        return timedelta(seconds=min(self.retry_base * 2 ** min(attempts - 1, 30), self.retry_max))

    # -- the loop ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.endpoints and self._task is None:
            self._listen(True)
            self._task = asyncio.create_task(self._loop(), name="outbox-dispatcher")

    async def stop(self) -> None:
        self._listen(False)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.http.aclose()

    def wake(self) -> None:
        """Something became due (an operator's replay): look now rather than at the next poll."""
        self._wake.set()

    # -- waking on commit ---------------------------------------------------------------------------
    # Session events are global to the Session class: each handler keeps to sessions on our engine,
    # so several services in one process (tests) each wake their own dispatcher only.
    def _listen(self, on: bool) -> None:
        bind = self.sessionmaker.kw.get("bind")
        if not isinstance(bind, AsyncEngine):
            return
        self._engine = bind.sync_engine
        handlers = (
            ("after_flush", self._after_flush),
            ("after_commit", self._after_commit),
            ("after_soft_rollback", self._after_rollback),
        )
        for name, handler in handlers:
            if on and not event.contains(Session, name, handler):
                event.listen(Session, name, handler)
            elif not on and event.contains(Session, name, handler):
                event.remove(Session, name, handler)

    def _after_flush(self, session: Session, _flush: UOWTransaction) -> None:
        # `new` still lists what this flush inserted.
        if session.bind is self._engine and any(isinstance(row, OutboundEvent) for row in session.new):
            session.info["outbox_recorded"] = True

    def _after_commit(self, session: Session) -> None:
        if session.info.pop("outbox_recorded", False):
            self._wake.set()  # the loop's own thread: commits run in its greenlets

    def _after_rollback(self, session: Session, _previous: object) -> None:
        session.info.pop("outbox_recorded", None)

    async def _loop(self) -> None:
        failures = FailureBackoff("outbox_dispatcher", base=self.poll_seconds)
        wait = self.poll_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()
            try:
                await self.drain()
            except Exception as exc:  # keep the loop alive; the rows stay for the next pass
                wait = failures.failed(exc)
            else:
                failures.succeeded()
                wait = self.poll_seconds

    # -- one pass ----------------------------------------------------------------------------------
    async def drain(self, *, max_rounds: int = 1000) -> DispatchResult:
        """Route new events, then deliver whatever is due until nothing is claimable."""
        result = DispatchResult()
        if not self.endpoints:
            return result
        async with transaction(self.sessionmaker) as db:
            result.routed = await repository.route_new_events(db, self.endpoints)
        for _ in range(max_rounds):
            async with transaction(self.sessionmaker) as db:
                claimed = await repository.claim_deliveries(
                    db, self.endpoints, now=utcnow(), lease=self.lease, limit=self.concurrency
                )
            if not claimed:
                break
            for status in await asyncio.gather(*(self._deliver(c) for c in claimed)):
                if status is DeliveryStatus.DELIVERED:
                    result.delivered += 1
                elif status is DeliveryStatus.PARKED:
                    result.parked += 1
                elif status is DeliveryStatus.PENDING:
                    result.retried += 1
        return result

    async def _deliver(self, claimed: repository.ClaimedDelivery) -> DeliveryStatus | None:
        outcome = await self._send(claimed)
        async with transaction(self.sessionmaker) as db:
            status = await repository.record_attempt(
                db,
                claimed,
                outcome,
                now=utcnow(),
                max_attempts=self.max_attempts,
                retry_in=self.retry_in(claimed.attempts + 1),
            )
        if status is DeliveryStatus.PARKED:
            log.warning(
                "outbound_event_parked",
                webhook_id=claimed.webhook_id,
                event_type=claimed.event_type,
                endpoint=claimed.endpoint_url,
                attempts=claimed.attempts + 1,
                error=outcome.error,
            )
        return status

    async def _send(self, claimed: repository.ClaimedDelivery) -> repository.AttemptOutcome:
        """One signed POST, with no transaction open."""
        body = body_of(claimed)
        attempted_at = utcnow()
        headers = signed_headers(self.signers[claimed.endpoint_url], claimed.webhook_id, body, attempted_at)
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self.http.post(claimed.endpoint_url, content=body.encode(), headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return repository.AttemptOutcome(
            attempted_at=attempted_at,
            status_code=status_code,
            error=error[:_MAX_ERROR] if error else None,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
