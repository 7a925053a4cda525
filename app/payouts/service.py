"""Payouts: create one at a provider, read and list them, the payee's return, the operator's sync.

Creating a payout never holds a transaction across the provider call: a short transaction reserves
the payout (`creating`, with its state token and Idempotency-Key), the provider is asked with none
open, and a second short transaction attaches its answer (or records why there is none). A retry
with the same Idempotency-Key finds the reservation, so the provider is asked once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import transaction
from app.errors import ApiError, NotFound
from app.idempotency import lock_key
from app.logging_setup import get_logger
from app.models import Payout, PayoutTransition, TransitionSource
from app.money import to_decimal
from app.orders.service import decode_cursor, encode_cursor
from app.payments.service import opening_deadline, reservation_timeout, utcnow
from app.payouts import repository, sync, writer
from app.providers.base import (
    Beneficiary,
    PayoutDelivery,
    PayoutRequest,
    PayoutStatus,
    Provider,
    ProviderError,
)
from app.providers.registry import (
    default_provider,
    enabled_plugins,
    return_hints,
    return_names,
    returned_state,
)

log = get_logger(__name__)

# Where the payee comes back from the provider's page (register it with the provider).
CALLBACK_PATH = "/payouts/callback"
IDEMPOTENCY_SCOPE = "payouts"
_RESERVATION_POLL_SECONDS = 0.05


def callback_url(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + CALLBACK_PATH


@dataclass(frozen=True)
class PayoutAsk:
    """What the operator asked for, validated (amounts in minor units, IBAN and BIC compact)."""

    provider: str | None
    amount: int
    currency: str
    reference: str
    communication: str
    payee_name: str | None
    payee_email: str | None
    payee_phone: str | None
    delivery: PayoutDelivery
    expiry_seconds: int
    language: str | None
    beneficiary: Beneficiary | None
    idempotency_key: str | None


def choose_provider(settings: Settings, providers: Mapping[str, Provider], name: str | None) -> Provider:
    """The provider that pays out: the one named, or DEFAULT_PROVIDER when it can, or the first
    enabled one that can. Raises ApiError (nothing written) otherwise."""
    if name is not None:
        provider = providers.get(name)
        if provider is None:
            raise ApiError(
                422,
                "provider_not_enabled",
                f"payment provider {name!r} is not enabled here; GET /providers lists those that are",
                [
                    {
                        "field": "body.provider",
                        "message": "not an enabled provider",
                        "type": "provider_not_enabled",
                    }
                ],
            )
        if not provider.capabilities.payout:
            raise ApiError(409, "not_supported", f"payment provider {name!r} cannot pay out")
        return provider
    candidates = [
        default_provider(settings, providers),
        *(plugin.name for plugin in enabled_plugins(providers)),
    ]
    for candidate in candidates:
        if candidate is not None and providers[candidate].capabilities.payout:
            return providers[candidate]
    raise ApiError(409, "not_supported", "no enabled payment provider can pay out")


@dataclass(frozen=True)
class _Reserved:
    payout_id: uuid.UUID
    request: PayoutRequest


def _same_request(payout: Payout, provider: Provider, ask: PayoutAsk) -> bool:
    beneficiary = ask.beneficiary
    return (
        payout.provider == provider.name
        and payout.amount == ask.amount
        and payout.currency == ask.currency
        and payout.reference == ask.reference
        and payout.communication == ask.communication
        and payout.beneficiary_iban == (beneficiary.iban if beneficiary else None)
    )


def _draft(provider: Provider, ask: PayoutAsk, state_token: str, now: datetime) -> writer.PayoutDraft:
    beneficiary = ask.beneficiary
    return writer.PayoutDraft(
        provider=provider.name,
        amount=ask.amount,
        currency=ask.currency,
        reference=ask.reference,
        communication=ask.communication,
        state_token=state_token,
        idempotency_key=ask.idempotency_key,
        payee_name=ask.payee_name,
        payee_email=ask.payee_email,
        payee_phone=ask.payee_phone,
        delivery=None if beneficiary else ask.delivery,
        expires_at=None if beneficiary else now + timedelta(seconds=ask.expiry_seconds),
        beneficiary_name=beneficiary.name if beneficiary else None,
        beneficiary_iban=beneficiary.iban if beneficiary else None,
        beneficiary_bic=beneficiary.bic if beneficiary else None,
    )


def _payout_request(ask: PayoutAsk, state_token: str, settings: Settings) -> PayoutRequest:
    return PayoutRequest(
        amount=to_decimal(ask.amount, ask.currency),
        currency=ask.currency,
        communication=ask.communication,
        state=state_token,
        redirect_uri=callback_url(settings),
        expiry_seconds=ask.expiry_seconds,
        payee_name=ask.payee_name,
        payee_email=ask.payee_email,
        payee_phone=ask.payee_phone,
        delivery=ask.delivery,
        beneficiary=ask.beneficiary,
        language=ask.language,
    )


async def _reserve_or_find(
    db: AsyncSession, provider: Provider, settings: Settings, ask: PayoutAsk
) -> Payout | _Reserved | None:
    """The payout this Idempotency-Key already made, a new reservation, or None while the request
    that made it is still at the provider. Concurrent requests with one key queue on its lock."""
    if ask.idempotency_key is not None:
        await db.execute(select(func.pg_advisory_xact_lock(lock_key(IDEMPOTENCY_SCOPE, ask.idempotency_key))))
        existing = await repository.payout_by_idempotency_key(db, ask.idempotency_key)
        if existing is not None:
            if not _same_request(existing, provider, ask):
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request; use a new key",
                )
            return None if existing.status is PayoutStatus.CREATING else existing
    state_token = secrets.token_urlsafe(32)
    payout = writer.reserve(db, _draft(provider, ask, state_token, utcnow()))
    await db.flush()
    return _Reserved(payout.id, _payout_request(ask, state_token, settings))


async def create_payout(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: Mapping[str, Provider],
    settings: Settings,
    ask: PayoutAsk,
) -> tuple[Payout, bool]:
    """Pay a payee out; the flag says whether the payout was created now (False: the one this
    Idempotency-Key made before)."""
    provider = choose_provider(settings, providers, ask.provider)
    deadline = time.monotonic() + reservation_timeout(settings).total_seconds()
    while True:
        async with transaction(sessionmaker) as db:
            found = await _reserve_or_find(db, provider, settings, ask)
        if isinstance(found, Payout):
            return await _committed(sessionmaker, found.id), False
        if isinstance(found, _Reserved):
            break
        if time.monotonic() > deadline:
            raise ApiError(409, "payout_in_progress", "this payout is being created; retry shortly")
        await asyncio.sleep(_RESERVATION_POLL_SECONDS)

    try:
        async with asyncio.timeout(opening_deadline(settings)):
            created = await provider.create_payout(found.request)
    except ProviderError as exc:
        # A 4xx answer is a refusal: nothing was created. Anything else (no answer, 5xx, an
        # unreadable answer) may have created it: a person checks before paying again.
        refused = exc.http_status is not None and 400 <= exc.http_status < 500
        log.warning("provider_create_payout_failed", payout_id=str(found.payout_id), error=str(exc))
        async with transaction(sessionmaker) as db:
            await writer.fail_reservation(db, found.payout_id, str(exc), review=not refused)
        if refused:
            raise ApiError(
                409,
                "payout_refused",
                f"the payment provider refused the payout ({exc.code or exc.http_status}): {exc.args[0]}",
            ) from exc
        raise ApiError(
            502,
            "provider_error",
            "the payment provider did not confirm the payout; it is kept for review, check the provider",
        ) from exc
    except TimeoutError as exc:
        async with transaction(sessionmaker) as db:
            await writer.fail_reservation(
                db, found.payout_id, "the provider did not answer in time", review=True
            )
        raise ApiError(
            502,
            "provider_error",
            "the payment provider did not answer in time; the payout is kept for review, check the provider",
        ) from exc
    except Exception as exc:
        async with transaction(sessionmaker) as db:
            await writer.fail_reservation(db, found.payout_id, f"{type(exc).__name__}: {exc}", review=True)
        raise

    async with transaction(sessionmaker) as db:
        attached = await writer.attach(db, found.payout_id, created)
    if attached is None:
        log.warning(
            "payout_created_too_late",
            payout_id=str(found.payout_id),
            provider_payout_id=created.provider_payout_id,
        )
        raise ApiError(
            502, "provider_error", "the payment provider answered too late; the payout is kept for review"
        )
    log.info("payout_created", payout_id=str(attached.id), provider_payout_id=created.provider_payout_id)
    return await _committed(sessionmaker, attached.id), True


async def _committed(sessionmaker: async_sessionmaker[AsyncSession], payout_id: uuid.UUID) -> Payout:
    """The payout as committed (every column loaded, for the response)."""
    async with sessionmaker() as db:
        payout = await repository.get_payout(db, payout_id)
    assert payout is not None
    return payout


# --- reading and listing ---------------------------------------------------------------------------


def _parse_id(payout_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(payout_id)
    except (ValueError, AttributeError, TypeError):
        raise NotFound("payout") from None


async def read_payout(db: AsyncSession, payout_id: str) -> tuple[Payout, list[PayoutTransition]]:
    """The payout and its transitions, oldest first; NotFound for an unknown or malformed id."""
    payout = await repository.get_payout(db, _parse_id(payout_id))
    if payout is None:
        raise NotFound("payout")
    return payout, await repository.transitions_of(db, payout.id)


@dataclass(frozen=True)
class PayoutPage:
    payouts: list[Payout]
    next_cursor: str | None


async def list_payouts(
    db: AsyncSession,
    *,
    status: PayoutStatus | None = None,
    reference: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> PayoutPage:
    """Newest first, keyset-paginated on (created_at, id), like the orders list."""
    after = decode_cursor(cursor) if cursor is not None else None
    payouts = await repository.page_of_payouts(
        db,
        status=status,
        reference=reference,
        created_from=created_from,
        created_to=created_to,
        after=after,
        limit=limit + 1,
    )
    next_cursor = None
    if len(payouts) > limit:
        payouts = payouts[:limit]
        next_cursor = encode_cursor(payouts[-1].created_at, payouts[-1].id)
    return PayoutPage(payouts=payouts, next_cursor=next_cursor)


# --- the operator's sync -------------------------------------------------------------------------


async def sync_now(
    sessionmaker: async_sessionmaker[AsyncSession], providers: Mapping[str, Provider], payout_id: str
) -> tuple[Payout, bool]:
    """Ask the provider about the payout now and apply the answer; the flag says whether it moved."""
    parsed = _parse_id(payout_id)
    async with sessionmaker() as db:
        payout = await repository.get_payout(db, parsed)
    if payout is None:
        raise NotFound("payout")
    if payout.provider_payout_id is None:
        raise ApiError(
            409,
            "payout_not_at_provider",
            f"this payout is {payout.status.value} and never reached the provider",
        )
    try:
        result = await sync.sync_payout(sessionmaker, parsed, providers, source=TransitionSource.OPERATOR)
    except (ProviderError, TimeoutError) as exc:
        raise ApiError(502, "provider_error", f"the provider could not answer: {exc}") from exc
    return await _committed(sessionmaker, parsed), result.changed


# --- the payee's return --------------------------------------------------------------------------


class CallbackRejected(Exception):
    """The return does not belong to a payout we created; nothing was written."""


@dataclass(frozen=True)
class CallbackOutcome:
    payout_id: uuid.UUID
    status: PayoutStatus


async def handle_callback(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: Mapping[str, Provider],
    query: Mapping[str, str],
    *,
    provider_timeout: float,
) -> CallbackOutcome:
    """Bind the payee's return to our payout by its `state` and the provider's id, then apply what
    the provider (never the query) says about it."""
    hints = return_hints(providers, query)
    state = returned_state(hints)
    if state is None:
        raise CallbackRejected("the payout link is incomplete")
    async with sessionmaker() as db:
        payout = await repository.find_by_state(db, state)
    if payout is None or not return_names(hints, payout.provider, payout.provider_payout_id):
        raise CallbackRejected("this payout link does not match a payout we started")
    try:
        result = await sync.sync_payout(
            sessionmaker,
            payout.id,
            providers,
            source=TransitionSource.CALLBACK,
            provider_timeout=provider_timeout,
        )
    except Exception as exc:  # the payee never sees a 500
        # The webhook or the sweeper finishes the job; meanwhile show what we know.
        log.warning(
            "payout_callback_sync_failed", payout_id=str(payout.id), error=f"{type(exc).__name__}: {exc}"
        )
        return CallbackOutcome(payout.id, payout.status)
    return CallbackOutcome(payout.id, result.status)
