"""`Idempotency-Key` for unsafe requests: one effect per key, the same answer on every retry.

Within the request's transaction:
1. take a transaction-scoped advisory lock derived from (scope, key); if another request holds it,
   answer 409 `idempotency_key_in_progress` at once rather than queueing behind it;
2. if a response is stored for the key: same request fingerprint -> replay it; different -> 422
   `idempotency_key_reused`;
3. otherwise run the handler and store its 2xx response in the same transaction, so the effect and
   the stored answer commit (or roll back) together. The (scope, key) primary key is the backstop.

An `ApiError` raised by the handler propagates and stores nothing, so a corrected retry with the
same key can still succeed. Stored bodies are returned verbatim on replay: for POST /orders that
includes the order's one-time access token (a client retrying a timed-out request needs it), so
the idempotency table holds those tokens; rows may be pruned by age (`created_at`) at any time
after the client's retry window.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ApiError
from app.models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
MAX_SCOPE_LENGTH = 100

Handler = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def fingerprint_of(*parts: Any) -> str:
    """sha256 of the canonical JSON of a request's parts (parsed body, path parameters...).

    Pass the validated body model rather than raw bytes, so key order and whitespace do not count.
    """
    canonical = json.dumps(
        list(parts), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def lock_key(scope: str, key: str) -> int:
    """The signed 64-bit advisory-lock id for (scope, key)."""
    digest = hashlib.sha256(f"idempotency\x00{scope}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def validate_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters (a random UUID is ideal)",
            [{"field": f"header.{HEADER}", "message": "1-255 printable ASCII characters"}],
        )


async def idempotent(
    session: AsyncSession,
    *,
    scope: str,
    key: str | None,
    fingerprint: str,
    handler: Handler,
) -> tuple[int, dict[str, Any], bool]:
    """Run `handler` at most once per (scope, key); returns (status_code, json_body, replayed)."""
    if key is None:
        status, body = await handler()
        return status, body, False
    if not 1 <= len(scope) <= MAX_SCOPE_LENGTH:
        raise ValueError(f"idempotency scope must be 1..{MAX_SCOPE_LENGTH} characters")
    validate_key(key)

    acquired = await session.scalar(select(func.pg_try_advisory_xact_lock(lock_key(scope, key))))
    if not acquired:
        raise _in_progress()

    stored = await session.get(IdempotencyKey, (scope, key))
    if stored is not None:
        if stored.request_hash != fingerprint:
            raise _reused()
        return stored.response_status, stored.response_body, True

    status, body = await handler()
    if 200 <= status < 300:
        session.add(
            IdempotencyKey(
                scope=scope, key=key, request_hash=fingerprint, response_status=status, response_body=body
            )
        )
        try:
            await session.flush()
        except IntegrityError:
            # Another transaction stored this key despite the lock (it cannot normally): same answer
            # as a request still in flight; the client's retry will be replayed.
            raise _in_progress() from None
    return status, body, False


async def replay(
    session: AsyncSession, *, scope: str, key: str | None, fingerprint: str
) -> tuple[int, dict[str, Any]] | None:
    """The stored answer for (scope, key), for flows that cannot hold a transaction while they run
    (they call a provider); None when there is none yet. 422 when the key came with another request.

    Such flows dedupe concurrent work themselves (a payment session is opened once per order) and
    store their answer with `remember`, which keeps the first answer stored."""
    if key is None:
        return None
    validate_key(key)
    stored = await session.get(IdempotencyKey, (scope, key))
    if stored is None:
        return None
    if stored.request_hash != fingerprint:
        raise _reused()
    return stored.response_status, stored.response_body


async def remember(
    session: AsyncSession, *, scope: str, key: str, fingerprint: str, status: int, body: dict[str, Any]
) -> tuple[int, dict[str, Any], bool]:
    """Store a 2xx answer for (scope, key); when another request stored one first, that one is
    returned instead (replayed=True), so every retry sees the same answer."""
    inserted = await session.scalar(
        insert(IdempotencyKey)
        .values(scope=scope, key=key, request_hash=fingerprint, response_status=status, response_body=body)
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.scope, IdempotencyKey.key])
        .returning(IdempotencyKey.key)
    )
    if inserted is not None:
        return status, body, False
    stored = await session.get(IdempotencyKey, (scope, key), populate_existing=True)
    assert stored is not None
    if stored.request_hash != fingerprint:
        raise _reused()
    return stored.response_status, stored.response_body, True


def _reused() -> ApiError:
    return ApiError(
        422,
        "idempotency_key_reused",
        f"this {HEADER} was already used with a different request; use a new key for a new request",
    )


def _in_progress() -> ApiError:
    return ApiError(
        409,
        "idempotency_key_in_progress",
        f"a request with this {HEADER} is still being processed; retry shortly",
    )
