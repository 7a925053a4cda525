"""The payout writer on real PostgreSQL: forward only, one transition per change, money checked."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.models import Payout, PayoutTransition, TransitionSource
from app.payouts import writer
from app.providers.base import (
    PAYMENT_STATUS_OF_PAYOUT,
    CreatedPayout,
    PaymentKind,
    PaymentSnapshot,
    PayoutDelivery,
    PayoutStatus,
)

COMMUNICATION = "Demo Shop payout November"


async def reserved(sm: async_sessionmaker[AsyncSession], *, amount: int = 2699) -> uuid.UUID:
    async with transaction(sm) as db:
        payout = writer.reserve(
            db,
            writer.PayoutDraft(
                provider="fintecture",
                amount=amount,
                currency="EUR",
                reference="SELLER-42",
                communication=COMMUNICATION,
                state_token=secrets.token_urlsafe(16),
                idempotency_key=None,
                payee_name="John Doe",
                payee_email="john@example.com",
                payee_phone=None,
                delivery=PayoutDelivery.LINK,
                expires_at=datetime.now(UTC) + timedelta(days=7),
                beneficiary_name=None,
                beneficiary_iban=None,
                beneficiary_bic=None,
            ),
        )
        await db.flush()
        return payout.id


async def awaiting_payee(sm: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    payout_id = await reserved(sm)
    async with transaction(sm) as db:
        attached = await writer.attach(
            db,
            payout_id,
            CreatedPayout(
                provider_payout_id=secrets.token_hex(16),
                payee_url="https://connect.example/v2/1",
                status=PayoutStatus.AWAITING_PAYEE,
            ),
        )
        assert attached is not None
    return payout_id


def snapshot(
    status: PayoutStatus, raw: str, transfer: str | None = None, **fields: object
) -> PaymentSnapshot:
    values: dict[str, object] = {
        "provider": "fintecture",
        "provider_session_id": "p-1",
        "status": PAYMENT_STATUS_OF_PAYOUT[status],
        "raw_status": raw,
        "transfer_state": transfer,
        "amount": Decimal("26.99"),
        "currency": "EUR",
        "communication": COMMUNICATION,
        "kind": PaymentKind.PAYOUT,
        "payout_status": status,
        "review_reason": "a reason" if status is PayoutStatus.NEEDS_REVIEW else None,
    }
    values.update(fields)
    return PaymentSnapshot(**values)  # type: ignore[arg-type]


async def apply(
    sm: async_sessionmaker[AsyncSession],
    payout_id: uuid.UUID,
    seen: PaymentSnapshot,
    *,
    at: datetime | None = None,
    source: TransitionSource = TransitionSource.WEBHOOK,
) -> writer.ApplyResult:
    async with transaction(sm) as db:
        return await writer.apply(db, payout_id, seen, source=source, observed_at=at or datetime.now(UTC))


async def moves(sm: async_sessionmaker[AsyncSession], payout_id: uuid.UUID) -> list[tuple[object, ...]]:
    async with sm() as db:
        rows = await db.execute(
            select(
                PayoutTransition.from_status,
                PayoutTransition.to_status,
                PayoutTransition.source,
                PayoutTransition.provider_status,
                PayoutTransition.transfer_state,
            )
            .where(PayoutTransition.payout_id == payout_id)
            .order_by(PayoutTransition.id)
        )
        return [tuple(row) for row in rows]


async def status_of(sm: async_sessionmaker[AsyncSession], payout_id: uuid.UUID) -> Payout:
    async with sm() as db:
        payout = await db.get(Payout, payout_id)
        assert payout is not None
        return payout


async def test_each_step_is_one_transition_with_its_source(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    payout_id = await awaiting_payee(sessionmaker)
    steps = [
        (snapshot(PayoutStatus.ACCOUNT_RECEIVED, "iban_received"), TransitionSource.CALLBACK),
        (snapshot(PayoutStatus.INITIATED, "payment_created", "initiated"), TransitionSource.WEBHOOK),
        (snapshot(PayoutStatus.PAID, "payment_created", "completed"), TransitionSource.POLL),
    ]
    for seen, source in steps:
        assert (await apply(sessionmaker, payout_id, seen, source=source)).changed
        # The same answer again, by any path, changes nothing.
        for again in (TransitionSource.WEBHOOK, TransitionSource.OPERATOR):
            assert not (await apply(sessionmaker, payout_id, seen, source=again)).changed
    W, A, T, S = (
        PayoutStatus.AWAITING_PAYEE,
        PayoutStatus.ACCOUNT_RECEIVED,
        PayoutStatus.INITIATED,
        PayoutStatus.PAID,
    )
    assert await moves(sessionmaker, payout_id) == [
        (None, PayoutStatus.CREATING, TransitionSource.API, None, None),
        (PayoutStatus.CREATING, W, TransitionSource.API, None, None),
        (W, A, TransitionSource.CALLBACK, "iban_received", None),
        (A, T, TransitionSource.WEBHOOK, "payment_created", "initiated"),
        (T, S, TransitionSource.POLL, "payment_created", "completed"),
    ]


async def test_forward_only(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    payout_id = await awaiting_payee(sessionmaker)
    early = datetime.now(UTC)
    await apply(sessionmaker, payout_id, snapshot(PayoutStatus.INITIATED, "payment_created", "initiated"))
    # A newer answer from an earlier step does not move it back; its raw status is still kept.
    result = await apply(sessionmaker, payout_id, snapshot(PayoutStatus.ACCOUNT_RECEIVED, "iban_received"))
    assert (result.status, result.changed) == (PayoutStatus.INITIATED, False)
    assert (await status_of(sessionmaker, payout_id)).provider_status == "iban_received"
    # An answer requested before the one applied is stale and ignored...
    stale = await apply(
        sessionmaker, payout_id, snapshot(PayoutStatus.FAILED, "payment_unsuccessful"), at=early
    )
    assert (stale.status, stale.stale) == (PayoutStatus.INITIATED, True)
    # ...unless it says the money left: a slow answer still moves it forward.
    late_paid = await apply(
        sessionmaker, payout_id, snapshot(PayoutStatus.PAID, "payment_created", "completed"), at=early
    )
    assert (late_paid.status, late_paid.changed) == (PayoutStatus.PAID, True)
    # After paid, the provider saying anything else is a regression a person must look at.
    regression = await apply(sessionmaker, payout_id, snapshot(PayoutStatus.FAILED, "payment_unsuccessful"))
    assert regression.status is PayoutStatus.NEEDS_REVIEW
    payout = await status_of(sessionmaker, payout_id)
    assert payout.review_reason and "regression" in payout.review_reason
    # needs_review is final.
    final = await apply(sessionmaker, payout_id, snapshot(PayoutStatus.PAID, "payment_created", "completed"))
    assert (final.status, final.changed) == (PayoutStatus.NEEDS_REVIEW, False)
    assert [m[1] for m in await moves(sessionmaker, payout_id)][-3:] == [
        PayoutStatus.INITIATED,
        PayoutStatus.PAID,
        PayoutStatus.NEEDS_REVIEW,
    ]


async def test_a_failed_payout_may_still_go_ahead(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    payout_id = await awaiting_payee(sessionmaker)
    await apply(sessionmaker, payout_id, snapshot(PayoutStatus.FAILED, "payment_unsuccessful", "rejected"))
    retried = await apply(
        sessionmaker, payout_id, snapshot(PayoutStatus.PAID, "payment_created", "completed")
    )
    assert (retried.status, retried.changed) == (PayoutStatus.PAID, True)


async def test_the_money_is_checked(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    for wrong in ({"amount": Decimal("26.98")}, {"currency": "GBP"}, {"communication": "something else"}):
        payout_id = await awaiting_payee(sessionmaker)
        result = await apply(
            sessionmaker, payout_id, snapshot(PayoutStatus.PAID, "payment_created", "completed", **wrong)
        )
        assert result.status is PayoutStatus.NEEDS_REVIEW, wrong
        assert "mismatch" in ((await status_of(sessionmaker, payout_id)).review_reason or "")
    # Nothing moved on a failed payout: no money to check.
    payout_id = await awaiting_payee(sessionmaker)
    failed = await apply(
        sessionmaker, payout_id, snapshot(PayoutStatus.FAILED, "payment_error", amount=Decimal(1))
    )
    assert failed.status is PayoutStatus.FAILED


async def test_a_payment_that_is_not_a_payout_needs_a_person(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    payout_id = await awaiting_payee(sessionmaker)
    pay_in = snapshot(
        PayoutStatus.PAID, "payment_created", "completed", payout_status=None, kind=PaymentKind.PAY_IN
    )
    assert (await apply(sessionmaker, payout_id, pay_in)).status is PayoutStatus.NEEDS_REVIEW


async def test_concurrent_answers_make_one_transition(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    payout_id = await awaiting_payee(sessionmaker)
    paid = snapshot(PayoutStatus.PAID, "payment_created", "completed")
    results = await asyncio.gather(*(apply(sessionmaker, payout_id, paid) for _ in range(10)))
    assert sum(result.changed for result in results) == 1
    assert [m[1] for m in await moves(sessionmaker, payout_id)].count(PayoutStatus.PAID) == 1


async def test_reservations_attach_or_fail_once(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    refused = await reserved(sessionmaker)
    async with transaction(sessionmaker) as db:
        assert await writer.fail_reservation(db, refused, "400 invalid_field")
    async with transaction(sessionmaker) as db:
        assert not await writer.fail_reservation(db, refused, "again")
        late = CreatedPayout(provider_payout_id="x" * 32, payee_url=None, status=PayoutStatus.INITIATED)
        assert await writer.attach(db, refused, late) is None
    assert (await status_of(sessionmaker, refused)).status is PayoutStatus.FAILED

    unsure = await reserved(sessionmaker)
    async with transaction(sessionmaker) as db:
        assert await writer.fail_reservation(
            db, unsure, "timed out", review=True, source=TransitionSource.POLL
        )
    payout = await status_of(sessionmaker, unsure)
    assert payout.status is PayoutStatus.NEEDS_REVIEW and "may have created" in (payout.review_reason or "")
    assert (await moves(sessionmaker, unsure))[-1][:3] == (
        PayoutStatus.CREATING,
        PayoutStatus.NEEDS_REVIEW,
        TransitionSource.POLL,
    )

    # Created at once with a verified beneficiary: straight to where the provider says it is.
    at_once = await reserved(sessionmaker)
    async with transaction(sessionmaker) as db:
        attached = await writer.attach(
            db,
            at_once,
            CreatedPayout(
                provider_payout_id=secrets.token_hex(16),
                payee_url=None,
                status=PayoutStatus.PAID,
                raw_status="payment_created",
                transfer_state="completed",
            ),
        )
        assert attached is not None and attached.status is PayoutStatus.PAID
    assert (await moves(sessionmaker, at_once))[-1] == (
        PayoutStatus.CREATING,
        PayoutStatus.PAID,
        TransitionSource.API,
        "payment_created",
        "completed",
    )
