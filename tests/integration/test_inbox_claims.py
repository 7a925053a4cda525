"""The inbox on real PostgreSQL: a delivery is stored as verified, once; a lease is owned, and a
payment another worker holds never crowds the claim window."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import transaction
from app.models import ProviderEvent
from app.payments import inbox, repository
from app.providers.base import WebhookHint


async def _events(sm: async_sessionmaker[AsyncSession], session_id: str, count: int) -> list[int]:
    async with transaction(sm) as db:
        rows = [
            ProviderEvent(
                provider="fintecture",
                delivery_id=f"{session_id}-{i}-{datetime.now(UTC).timestamp()}",
                provider_session_id=session_id,
                raw_body=b"",
                payload={},
                attempts=0,
            )
            for i in range(count)
        ]
        db.add_all(rows)
        await db.flush()
        return [row.id for row in rows]


async def _claim(
    sm: async_sessionmaker[AsyncSession], *, lease: timedelta, max_groups: int = 16
) -> list[repository.ClaimedGroup]:
    async with transaction(sm) as db:
        return await repository.claim_events(db, now=datetime.now(UTC), lease=lease, max_groups=max_groups)


async def test_a_lease_taken_over_is_no_longer_the_first_workers(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _events(sessionmaker, "sess-a", 2)
    [first] = await _claim(sessionmaker, lease=timedelta(seconds=0.5))
    first_lease = first.claimed_until
    assert sorted(first.event_ids) == ids

    assert await _claim(sessionmaker, lease=timedelta(seconds=30)) == []  # held
    await asyncio.sleep(0.6)
    [second] = await _claim(sessionmaker, lease=timedelta(seconds=30))  # the lease ran out
    second_lease = second.claimed_until
    assert second_lease != first_lease and sorted(second.event_ids) == ids

    async with transaction(sessionmaker) as db:
        assert await repository.lock_claimed_events(db, ids, first_lease) == []
        held = await repository.lock_claimed_events(db, ids, second_lease)
    assert sorted(e.id for e in held) == ids
    assert {e.attempts for e in held} == {2}


async def test_a_payment_held_elsewhere_does_not_crowd_out_the_rest(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _events(sessionmaker, "sess-busy", 1)
    [held] = await _claim(sessionmaker, lease=timedelta(seconds=30), max_groups=1)
    assert held.provider_session_id == "sess-busy"
    await _events(sessionmaker, "sess-busy", 40)  # follow-ups for the payment being worked on
    [other] = await _events(sessionmaker, "sess-quiet", 1)

    [claimed] = await _claim(sessionmaker, lease=timedelta(seconds=30), max_groups=1)
    assert list(claimed.event_ids) == [other]


async def test_events_naming_no_payment_are_claimed_one_by_one(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessionmaker) as db:
        rows = [
            ProviderEvent(
                provider="fintecture", delivery_id=f"nameless-{i}", raw_body=b"", payload={}, attempts=0
            )
            for i in range(3)
        ]
        db.add_all(rows)
    claimed = await _claim(sessionmaker, lease=timedelta(seconds=30))
    assert sorted(len(group.event_ids) for group in claimed) == [1, 1, 1]
    assert {group.provider_session_id for group in claimed} == {None}


async def test_a_claimed_payment_takes_every_event_waiting_about_it(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # Deliveries about two payments, interleaved: the candidate window (4 rows for one group)
    # holds only some of the first payment's; the claim takes all 30 of them, and none of the other's.
    flood: list[int] = []
    other: list[int] = []
    for _ in range(30):
        flood += await _events(sessionmaker, "sess-flood", 1)
        other += await _events(sessionmaker, "sess-other", 1)

    [claimed] = await _claim(sessionmaker, lease=timedelta(seconds=30), max_groups=1)
    assert claimed.provider_session_id == "sess-flood"
    assert list(claimed.event_ids) == flood

    [next_claim] = await _claim(sessionmaker, lease=timedelta(seconds=30), max_groups=1)
    assert list(next_claim.event_ids) == other
    assert await _claim(sessionmaker, lease=timedelta(seconds=30), max_groups=1) == []


async def test_a_stored_delivery_keeps_its_payload_and_body_as_verified(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    payload = {
        "session_id": "sess-json",
        "amount": 12345678901234567890123,  # past 64 bits
        "rate": 0.1,
        "tiny": 1e-300,
        "flags": [True, False, None],
        "nested": {"name": "Zoë €", "separators": "\u2028\u2029", "quote": '"\\/<>&', "empty": {}},
    }
    hint = WebhookHint(
        delivery_id="d-json",
        provider_session_id="sess-json",
        event_type="payment",
        content_type="application/json",
        payload=payload,
    )
    raw = b'{"as": "received"}'
    assert await inbox.store(engine, "powens", hint, raw) is True
    assert await inbox.store(engine, "powens", hint, raw) is False  # the same delivery again
    async with transaction(sessionmaker) as db:
        [event] = (await db.scalars(select(ProviderEvent).where(ProviderEvent.delivery_id == "d-json"))).all()
    assert event.payload == payload
    assert (event.raw_body, event.provider, event.event_type) == (raw, "powens", "payment")


async def test_a_claim_skips_a_waiting_event_another_workers_scan_holds(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # Another worker's candidate scan holds one event about our payment (and may next want a row
    # our claim holds): the claim must not wait for it, or two processes' claims deadlock.
    first, held, last = await _events(sessionmaker, "sess-shared", 3)
    async with sessionmaker() as other_worker:
        await other_worker.execute(select(ProviderEvent.id).where(ProviderEvent.id == held).with_for_update())
        [claimed] = await asyncio.wait_for(_claim(sessionmaker, lease=timedelta(seconds=30)), timeout=5)
        assert list(claimed.event_ids) == [first, last]
        await other_worker.rollback()

    async with transaction(sessionmaker) as db:
        skipped = await db.get(ProviderEvent, held)
        assert skipped is not None
        assert skipped.claimed_until is None and skipped.processed_at is None and skipped.attempts == 0
    # It stays due: claimed once the payment's lease is over.
    assert await _claim(sessionmaker, lease=timedelta(seconds=30)) == []
    async with transaction(sessionmaker) as db:
        assert (
            await repository.settle_claimed_events(
                db, claimed.event_ids, claimed.claimed_until, now=datetime.now(UTC)
            )
            == 2
        )
    [later] = await _claim(sessionmaker, lease=timedelta(seconds=30))
    assert list(later.event_ids) == [held]
