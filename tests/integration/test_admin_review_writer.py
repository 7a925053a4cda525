"""Resolving an order's review, in the one writer, on real PostgreSQL: only from `needs_review`, only
to `paid` or `failed`, with a note, recorded as an operator transition and an outbound event; of
two operators at once exactly one wins; a repeat of what was reviewed does not reopen it."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import get_args

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.models import Order, OrderTransition, OutboundEvent
from app.orders.schemas import ReviewResolve
from app.orders.states import REVIEW_RESOLUTIONS, OrderStatus
from app.payments import writer
from app.providers.base import PaymentStatus
from tests.integration.test_writer import apply, make_order, snapshot_for


async def _mismatched(sm: async_sessionmaker[AsyncSession]) -> tuple[uuid.UUID, uuid.UUID]:
    """An order the payer paid 0.01 EUR short: the writer sends it to review."""
    order_id, [sid] = await make_order(sm)
    short = await snapshot_for(
        sm, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed", amount=Decimal("273.49")
    )
    await apply(sm, sid, short)
    return order_id, sid


async def _resolve(
    sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID, target: OrderStatus, note: str
) -> OrderTransition:
    async with transaction(sm) as db:
        return await writer.resolve_review(db, order_id, target, note=note)


async def _counts(sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> tuple[str, int, int]:
    async with sm() as db:
        order = await db.get(Order, order_id)
        assert order is not None
        transitions = await db.scalar(
            select(func.count()).select_from(OrderTransition).where(OrderTransition.order_id == order_id)
        )
        events = await db.scalar(
            select(func.count()).select_from(OutboundEvent).where(OutboundEvent.order_id == order_id)
        )
        return order.status, int(transitions or 0), int(events or 0)


def test_the_api_offers_exactly_the_resolutions_the_state_machine_allows() -> None:
    offered = set(get_args(ReviewResolve.model_fields["to"].annotation))
    assert offered == {str(status) for status in REVIEW_RESOLUTIONS}


@pytest.mark.parametrize("target", [OrderStatus.PAID, OrderStatus.FAILED])
async def test_a_review_resolves_with_a_note_an_operator_transition_and_an_event(
    sessionmaker: async_sessionmaker[AsyncSession], target: OrderStatus
) -> None:
    order_id, sid = await _mismatched(sessionmaker)
    assert (await _counts(sessionmaker, order_id))[0] == "needs_review"

    transition = await _resolve(sessionmaker, order_id, target, "Payer confirmed by phone <b>ok</b>")

    async with sessionmaker() as db:
        order = await db.get(Order, order_id)
        assert order is not None and order.status == target
        row = await db.get(OrderTransition, transition.id)
        assert row is not None
        assert (row.from_status, row.to_status, row.source) == ("needs_review", target, "operator")
        assert row.note == "Payer confirmed by phone <b>ok</b>"
        assert row.payment_session_id == sid  # the payment the review was about
        assert row.reason is not None and "amount mismatch" in row.reason
        event = await db.scalar(
            select(OutboundEvent).where(OutboundEvent.order_id == order_id).order_by(OutboundEvent.id.desc())
        )
        assert event is not None and event.type == f"order.{target}"
        assert event.data["previous_status"] == "needs_review" and event.data["source"] == "operator"


@pytest.mark.parametrize(
    "target",
    [s for s in OrderStatus if s not in REVIEW_RESOLUTIONS],
)
async def test_no_other_resolution_is_allowed_and_nothing_is_written(
    sessionmaker: async_sessionmaker[AsyncSession], target: OrderStatus
) -> None:
    order_id, _ = await _mismatched(sessionmaker)
    before = await _counts(sessionmaker, order_id)
    with pytest.raises(ValueError, match="resolves to one of"):
        await _resolve(sessionmaker, order_id, target, "a note")
    assert await _counts(sessionmaker, order_id) == before


async def test_an_empty_note_is_refused(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    order_id, _ = await _mismatched(sessionmaker)
    before = await _counts(sessionmaker, order_id)
    with pytest.raises(ValueError, match="note"):
        await _resolve(sessionmaker, order_id, OrderStatus.PAID, "   ")
    assert await _counts(sessionmaker, order_id) == before


async def test_only_an_order_in_review_is_resolved(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    order_id, _ = await make_order(sessionmaker)  # awaiting_payment
    before = await _counts(sessionmaker, order_id)
    with pytest.raises(writer.ReviewNotOpen) as raised:
        await _resolve(sessionmaker, order_id, OrderStatus.PAID, "a note")
    assert raised.value.status is OrderStatus.AWAITING_PAYMENT
    assert await _counts(sessionmaker, order_id) == before
    with pytest.raises(LookupError):
        await _resolve(sessionmaker, uuid.uuid4(), OrderStatus.PAID, "a note")


async def test_of_two_operators_resolving_at_once_exactly_one_wins(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, _ = await _mismatched(sessionmaker)
    _, transitions_before, events_before = await _counts(sessionmaker, order_id)
    outcomes = await asyncio.gather(
        _resolve(sessionmaker, order_id, OrderStatus.PAID, "first"),
        _resolve(sessionmaker, order_id, OrderStatus.FAILED, "second"),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, OrderTransition)]
    lost = [o for o in outcomes if isinstance(o, writer.ReviewNotOpen)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    status, transitions, events = await _counts(sessionmaker, order_id)
    assert status == won[0].to_status
    assert (transitions, events) == (transitions_before + 1, events_before + 1)


async def test_the_same_answer_again_does_not_reopen_a_resolved_review(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, sid = await _mismatched(sessionmaker)
    await _resolve(sessionmaker, order_id, OrderStatus.PAID, "short by a cent, accepted")
    after = await _counts(sessionmaker, order_id)
    # The provider's webhook is delivered again (or replayed): the same short payment.
    short = await snapshot_for(
        sessionmaker, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed", amount=Decimal("273.49")
    )
    result = await apply(sessionmaker, sid, short)
    assert not result.order_changed
    assert await _counts(sessionmaker, order_id) == after


async def test_a_second_payment_after_a_resolution_is_still_flagged(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order_id, [first, second] = await make_order(sessionmaker, sessions=2)
    paid = await snapshot_for(sessionmaker, first, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    await apply(sessionmaker, first, paid)
    twice = await snapshot_for(sessionmaker, second, PaymentStatus.SUCCEEDED, "payment_created", "completed")
    await apply(sessionmaker, second, twice)
    assert (await _counts(sessionmaker, order_id))[0] == "needs_review"  # paid twice
    await _resolve(sessionmaker, order_id, OrderStatus.PAID, "second payment returned by bank transfer")
    # The second payment's webhook again: it is the payment the review was about, already counted.
    assert not (await apply(sessionmaker, second, twice)).order_changed
    assert (await _counts(sessionmaker, order_id))[0] == "paid"
    # The first session's provider now regresses: that is news, and a person must look again.
    regressed = await snapshot_for(sessionmaker, first, PaymentStatus.FAILED, "payment_rejected", "rejected")
    assert (await apply(sessionmaker, first, regressed)).order_changed
    assert (await _counts(sessionmaker, order_id))[0] == "needs_review"
