"""Webhook delivery to merchants, for every provider: retries with back-off, faults, and a record.

A provider turns each change into an `Outgoing` notification (its URL, its body, the bytes on the
wire and how to sign one attempt) and hands it to the one `Dispatcher`, which makes it a `Delivery`.
Attempts are jobs on the simulator's clock: the first is due at once (or later, with the delay
fault); after a non-2xx answer, a transport error or a timeout, retry n (n = 1..max_retries) is due
`base * 2**(n-1)` clock-seconds after the failure. Every attempt is signed afresh by the provider
(a fresh date, so it passes the merchant's time window) and keeps the delivery's identity (the
body, and for Fintecture the `X-Request-ID`) so the merchant can dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from simulator.clock import Clock, iso
from simulator.config import SimulatorConfig
from simulator.faults import Faults
from simulator.scheduler import Scheduler

# Delivery states; the first four are "not finished yet".
SCHEDULED, RETRYING, HELD, SENDING = "scheduled", "retrying", "held", "sending"
DELIVERED, FAILED, DROPPED = "delivered", "failed", "dropped"
UNFINISHED = frozenset({SCHEDULED, RETRYING, HELD, SENDING})


@dataclass
class Attempt:
    number: int
    at: datetime
    date: str
    status_code: int | None = None
    error: str | None = None
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "at": iso(self.at),
            "date": self.date,
            "status_code": self.status_code,
            "error": self.error,
            "duplicate": self.duplicate,
        }


# Signs one attempt made at the given clock time: (the date it carries, every header to send).
Signer = Callable[[datetime], tuple[str, dict[str, str]]]


@dataclass
class Outgoing:
    """One notification a provider wants delivered, exactly as it will go on every attempt."""

    provider: str
    app_id: str
    url: str
    session_id: str  # the provider's id of the payment it is about, as a string
    event: str
    fields: dict[str, Any]  # the body's content, for the record
    body: bytes  # the payload, as the merchant reads it once decoded
    request_id: str  # the delivery's identity, the same on every attempt
    sign: Signer
    content: bytes | None = None  # the bytes on the wire when they differ from `body` (compression)
    extra: dict[str, Any] = field(default_factory=dict)  # provider-specific fields for /_sim/webhooks


@dataclass
class Delivery:
    id: str
    request_id: str
    app_id: str
    url: str
    session_id: str
    event: str
    fields: dict[str, Any]
    body: bytes
    created_at: datetime
    provider: str = "fintecture"
    content: bytes | None = None
    sign: Signer | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    state: str = SCHEDULED
    next_attempt_at: datetime | None = None
    copies: int = 1
    faults: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "request_id": self.request_id,
            "app_id": self.app_id,
            "url": self.url,
            "session_id": self.session_id,
            "event": self.event,
            "fields": self.fields,
            "body": self.body.decode(),
            "created_at": iso(self.created_at),
            "state": self.state,
            "next_attempt_at": iso(self.next_attempt_at),
            "faults": self.faults,
            "attempts": [attempt.to_json() for attempt in self.attempts],
            **self.extra,
        }


class Dispatcher:
    def __init__(self, config: SimulatorConfig, clock: Clock, scheduler: Scheduler, faults: Faults) -> None:
        self._config = config
        self._clock = clock
        self._scheduler = scheduler
        self._faults = faults
        self.deliveries: dict[str, Delivery] = {}
        self._held: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._owns_client = config.webhook_client is None
        self._client = config.webhook_client or httpx.AsyncClient(transport=config.webhook_transport)

    def emit(self, outgoing: Outgoing) -> Delivery:
        now = self._clock.now()
        delivery = Delivery(
            id=uuid.uuid4().hex,
            request_id=outgoing.request_id,
            app_id=outgoing.app_id,
            url=outgoing.url,
            session_id=outgoing.session_id,
            event=outgoing.event,
            fields=outgoing.fields,
            body=outgoing.body,
            created_at=now,
            provider=outgoing.provider,
            content=outgoing.content,
            sign=outgoing.sign,
            extra=outgoing.extra,
        )
        plan = self._faults.plan_webhook()
        delivery.faults = plan.labels()
        delivery.copies = plan.copies
        self._remember(delivery)
        if plan.drop:
            delivery.state = DROPPED
        elif plan.reorder:
            delivery.state = HELD
            self._held.append(delivery)
            if len(self._held) >= self._faults.reorder_batch_size:
                self._release_held(now)
        else:
            self._schedule(delivery, now + timedelta(seconds=plan.delay_seconds))
        return delivery

    def _remember(self, delivery: Delivery) -> None:
        self.deliveries[delivery.id] = delivery
        while len(self.deliveries) > self._config.max_recorded:
            oldest = next(iter(self.deliveries))
            if self.deliveries[oldest].state in UNFINISHED:
                break
            del self.deliveries[oldest]

    def _release_held(self, now: datetime) -> None:
        batch = list(reversed(self._held))
        self._held.clear()
        for delivery in batch:
            delivery.state = SCHEDULED
            delivery.next_attempt_at = now
        # One job sends the whole batch in sequence, so the reverse order is the arrival order.
        self._scheduler.at(now, lambda: self._spawn(self._send_in_sequence(batch)))

    def _schedule(self, delivery: Delivery, due: datetime) -> None:
        delivery.next_attempt_at = due
        self._scheduler.at(due, lambda: self._spawn(self._attempt(delivery)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_in_sequence(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            await self._attempt(delivery)

    async def _attempt(self, delivery: Delivery) -> None:
        if delivery.state not in {SCHEDULED, RETRYING}:
            return
        delivery.state = SENDING
        delivery.next_attempt_at = None
        if await self._post(delivery, duplicate=False):
            delivery.state = DELIVERED
            for _ in range(delivery.copies - 1):
                await self._post(delivery, duplicate=True)
            return
        retries_done = len(delivery.attempts) - 1
        if retries_done < self._config.webhook_max_retries:
            delivery.state = RETRYING
            delay = self._config.webhook_retry_base_delay * 2**retries_done
            self._schedule(delivery, self._clock.now() + timedelta(seconds=delay))
        else:
            delivery.state = FAILED

    async def _post(self, delivery: Delivery, *, duplicate: bool) -> bool:
        assert delivery.sign is not None  # every delivery is made from an Outgoing
        now = self._clock.now()
        date, headers = delivery.sign(now)
        attempt = Attempt(number=len(delivery.attempts) + 1, at=now, date=date, duplicate=duplicate)
        delivery.attempts.append(attempt)
        try:
            response = await self._client.post(
                delivery.url,
                content=delivery.content if delivery.content is not None else delivery.body,
                headers=headers,
                timeout=self._config.webhook_timeout_seconds,
            )
        except Exception as exc:  # a receiver that is down, slow or broken is exactly what retries are for
            attempt.error = f"{type(exc).__name__}: {exc}"
            return False
        attempt.status_code = response.status_code
        return 200 <= response.status_code < 300

    def summary(self, settled: bool) -> dict[str, Any]:
        waiting = [d for d in self.deliveries.values() if d.state in {SCHEDULED, RETRYING}]
        upcoming = [d.next_attempt_at for d in waiting if d.next_attempt_at is not None]
        return {
            "settled": settled,
            "in_flight": len(self._tasks),
            "scheduled": len(waiting),
            "held": len(self._held),
            "next_attempt_at": iso(min(upcoming)) if upcoming else None,
            "deliveries": len(self.deliveries),
        }

    async def settle(self, *, max_wait: float, include_scheduled: bool) -> dict[str, Any]:
        """Wait until no attempt is running or due now (and, with `include_scheduled`, none is
        waiting for a later time either). Returns `summary()`; `settled` is false on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            self._scheduler.run_due()
            remaining = deadline - loop.time()
            if self._tasks:
                if remaining <= 0:
                    return self.summary(settled=False)
                await asyncio.wait(set(self._tasks), timeout=remaining)
                continue
            if include_scheduled and any(d.state in {SCHEDULED, RETRYING} for d in self.deliveries.values()):
                if remaining <= 0:
                    return self.summary(settled=False)
                await asyncio.sleep(min(0.01, remaining))
                continue
            return self.summary(settled=True)

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def reset(self) -> None:
        await self._cancel_tasks()
        self.deliveries.clear()
        self._held.clear()

    async def close(self) -> None:
        await self._cancel_tasks()
        if self._owns_client:
            await self._client.aclose()
