"""Opening a payment session, as the writer records it on real PostgreSQL: the reservation and the
attachment are driver statements, and must write exactly what the ORM writers write for a move
(the audit row, the outbound event), with the order's status read under its lock."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import driver_connection, transaction
from app.models import Order, OrderTransition, OutboundEvent, PaymentSession
from app.orders.states import OrderStatus
from app.payments import repository, writer
from app.providers.base import CreatedSession, PaymentStatus
from tests.integration.test_writer import make_order


async def new_order(sm: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    order_id, _ = await make_order(sm, sessions=0, status=OrderStatus.PENDING)
    return order_id


async def set_status(sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID, status: OrderStatus) -> None:
    async with transaction(sm) as db:
        order = await db.get(Order, order_id)
        assert order is not None
        order.status = status


async def reserve(
    engine: AsyncEngine, order_id: uuid.UUID, *, token_hash: str | None = None
) -> tuple[uuid.UUID, repository.LockedOrder] | None:
    session_id = uuid.uuid4()
    async with driver_connection(engine) as conn:
        made = await writer.reserve_session(
            conn,
            order_id,
            token_hash=token_hash,
            session_id=session_id,
            provider="fintecture",
            state_token=secrets.token_urlsafe(16),
            now=datetime.now(UTC),
            expiry_seconds=1800,
        )
    assert made is not None
    return (session_id, made.order) if made.reserved else None


async def reserved_order(
    engine: AsyncEngine, sm: async_sessionmaker[AsyncSession]
) -> tuple[uuid.UUID, uuid.UUID, repository.LockedOrder]:
    """A new pending order with its reservation: (order id, session id, the order as reserved)."""
    order_id = await new_order(sm)
    reserved = await reserve(engine, order_id)
    assert reserved is not None
    return order_id, *reserved


async def attach(
    engine: AsyncEngine, order: repository.LockedOrder, session_id: uuid.UUID, provider_id: str
) -> writer.SessionAttached | None:
    async with driver_connection(engine) as conn:
        return await writer.attach_session(
            conn, order, session_id, CreatedSession(provider_id, f"https://connect.example/{provider_id}")
        )


async def rows(sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> dict[str, list]:  # type: ignore[type-arg]
    async with sm() as db:
        return {
            "sessions": list(
                await db.scalars(select(PaymentSession).where(PaymentSession.order_id == order_id))
            ),
            "transitions": list(
                await db.scalars(select(OrderTransition).where(OrderTransition.order_id == order_id))
            ),
            "events": list(await db.scalars(select(OutboundEvent).where(OutboundEvent.order_id == order_id))),
            "order": [await db.get(Order, order_id, populate_existing=True)],
        }


async def test_a_reservation_then_its_attachment_write_the_session_the_move_and_its_event(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id, session_id, order = await reserved_order(engine, sessionmaker)

    written = await rows(sessionmaker, order_id)
    [session] = written["sessions"]
    assert (session.id, session.status, session.provider_session_id) == (
        session_id,
        PaymentStatus.CREATING,
        None,
    )
    assert (session.amount, session.currency, session.communication) == (27350, "EUR", order.reference)
    assert written["transitions"] == [] and written["events"] == []
    assert written["order"][0].status == OrderStatus.PENDING  # the order waits for the provider

    attached = await attach(engine, order, session_id, "prov-1")
    assert attached is not None
    assert attached.order_status is OrderStatus.AWAITING_PAYMENT
    assert attached.session.provider_session_id == "prov-1"

    written = await rows(sessionmaker, order_id)
    [session] = written["sessions"]
    assert (session.status, session.provider_session_id) == (PaymentStatus.OPEN, "prov-1")
    assert session.connect_url == "https://connect.example/prov-1"
    assert written["order"][0].status == OrderStatus.AWAITING_PAYMENT
    [transition] = written["transitions"]
    assert (transition.from_status, transition.to_status) == (
        OrderStatus.PENDING,
        OrderStatus.AWAITING_PAYMENT,
    )
    assert (transition.source.value, transition.payment_session_id) == ("api", session_id)
    [event] = written["events"]
    assert event.type == "order.awaiting_payment" and event.stream == f"order:{order_id}"
    assert event.data == {
        "order_id": str(order_id),
        "reference": order.reference,
        "status": "awaiting_payment",
        "previous_status": "pending",
        "amount": 27350,
        "currency": "EUR",
        "payment_session_id": str(session_id),
        "refund_id": None,
        "reason": None,
        "source": "api",
    }


async def test_no_second_reservation_while_one_is_open_or_being_opened(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await new_order(sessionmaker)
    first = await reserve(engine, order_id)
    assert first is not None
    assert await reserve(engine, order_id) is None  # being opened
    await attach(engine, first[1], first[0], "prov-1")
    assert await reserve(engine, order_id) is None  # open
    assert len((await rows(sessionmaker, order_id))["sessions"]) == 1


async def test_concurrent_reservations_make_exactly_one(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await new_order(sessionmaker)
    results = await asyncio.gather(*(reserve(engine, order_id) for _ in range(8)))
    assert sum(result is not None for result in results) == 1
    assert len((await rows(sessionmaker, order_id))["sessions"]) == 1


async def test_a_reservation_that_waited_for_the_lock_sees_the_one_committed_meanwhile(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The double click's race, made deterministic: the second reservation starts while the first
    holds the order's lock, and must see the first's session once it gets the lock (one statement
    would have taken its snapshot before waiting, and reserved a second)."""
    order_id = await new_order(sessionmaker)
    async with transaction(sessionmaker) as db:
        await repository.lock_order(db, order_id)
        second = asyncio.create_task(reserve(engine, order_id))
        await asyncio.sleep(0.3)
        assert not second.done()  # waiting for the lock
        db.add(
            PaymentSession(
                order_id=order_id,
                provider="fintecture",
                state_token=secrets.token_urlsafe(16),
                amount=27350,
                currency="EUR",
                communication="ORD-FIRST",
                status=PaymentStatus.CREATING,
                expires_at=datetime.now(UTC) + timedelta(minutes=30),
            )
        )
    assert await second is None
    [session] = (await rows(sessionmaker, order_id))["sessions"]
    assert session.communication == "ORD-FIRST"


async def test_the_reservation_checks_the_token_and_a_wrong_one_waits_for_no_lock(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await new_order(sessionmaker)  # its token hash is "0" * 64
    async with transaction(sessionmaker) as db:
        await repository.lock_order(db, order_id)
        async with driver_connection(engine) as conn:
            # Not blocked behind the lock held above: a wrong token matches no row to lock.
            refused = await asyncio.wait_for(
                writer.reserve_session(
                    conn,
                    order_id,
                    token_hash="f" * 64,
                    session_id=uuid.uuid4(),
                    provider="fintecture",
                    state_token=secrets.token_urlsafe(16),
                    now=datetime.now(UTC),
                    expiry_seconds=1800,
                ),
                timeout=2,
            )
        assert refused is None
        owner = asyncio.create_task(reserve(engine, order_id, token_hash="0" * 64))
        await asyncio.sleep(0.3)
        assert not owner.done()  # the owner's token takes the lock, so it waits
    made = await owner
    assert made is not None and made[1].status is OrderStatus.PENDING
    assert len((await rows(sessionmaker, order_id))["sessions"]) == 1
    # The operator (no token hash: its key was checked before) may reserve for any order.
    other = await new_order(sessionmaker)
    assert await reserve(engine, other, token_hash=None) is not None


async def test_the_move_is_recorded_from_the_status_under_the_lock_not_the_one_read_when_reserving(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id, session_id, order = await reserved_order(engine, sessionmaker)
    # Meanwhile an earlier attempt's failure is applied.
    await set_status(sessionmaker, order_id, OrderStatus.FAILED)

    attached = await attach(engine, order, session_id, "prov-2")
    assert attached is not None and attached.order_status is OrderStatus.AWAITING_PAYMENT
    assert attached.transition is not None and attached.transition["from_status"] == "failed"
    written = await rows(sessionmaker, order_id)
    [transition] = written["transitions"]
    assert transition.from_status == OrderStatus.FAILED
    [event] = written["events"]
    assert event.data["previous_status"] == "failed"


async def test_an_order_settled_meanwhile_keeps_its_status_and_the_session_is_still_recorded(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id, session_id, order = await reserved_order(engine, sessionmaker)
    await set_status(sessionmaker, order_id, OrderStatus.PAID)  # another session paid it meanwhile

    attached = await attach(engine, order, session_id, "prov-3")
    assert attached is not None
    assert attached.order_status is OrderStatus.PAID and attached.transition is None
    written = await rows(sessionmaker, order_id)
    assert written["order"][0].status == OrderStatus.PAID
    assert written["sessions"][0].provider_session_id == "prov-3"  # a payment on it is still seen
    assert written["transitions"] == [] and written["events"] == []


async def test_a_reservation_declared_abandoned_is_not_attached_and_nothing_moves(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id, session_id, order = await reserved_order(engine, sessionmaker)
    async with transaction(sessionmaker) as db:
        assert await writer.fail_reservation(db, session_id, "abandoned: the process opening it stopped")

    assert await attach(engine, order, session_id, "prov-4") is None
    written = await rows(sessionmaker, order_id)
    [session] = written["sessions"]
    assert (session.status, session.provider_session_id) == (PaymentStatus.FAILED, None)
    assert written["order"][0].status == OrderStatus.PENDING
    assert written["transitions"] == [] and written["events"] == []


async def test_the_attachment_waits_for_the_order_lock_before_touching_the_session(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Every writer locks the order, then the session: one that holds the order's lock and then
    asks for the session's must not find it locked by the attachment (a deadlock)."""
    order_id, session_id, order = await reserved_order(engine, sessionmaker)
    async with transaction(sessionmaker) as db:
        await repository.lock_order(db, order_id)
        attaching = asyncio.create_task(attach(engine, order, session_id, "prov-5"))
        await asyncio.sleep(0.3)
        assert not attaching.done()
        # The session row is free: the attachment waits on the order, holding nothing.
        locked = await repository.lock_session(db, session_id)
        assert locked.status is PaymentStatus.CREATING
    attached = await attaching
    assert attached is not None and attached.order_status is OrderStatus.AWAITING_PAYMENT
    async with sessionmaker() as db:
        event = await db.scalar(select(OutboundEvent).where(OutboundEvent.order_id == order_id))
    assert event is not None and event.data["previous_status"] == "pending"
