"""Who is calling: the operator (ADMIN_API_KEY) or the holder of an order's access token.

Both arrive as `Authorization: Bearer <token>`. Comparisons are constant-time over sha256 digests,
so neither the content nor the length of a secret leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.config import Settings
from app.deps import SettingsDep

# Declared as two schemes so the OpenAPI document says which secret each endpoint wants.
_operator_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="OperatorKey",
    description="The merchant's operator key (ADMIN_API_KEY).",
)
_order_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="OrderAccessToken",
    description="The order's access token returned once by POST /orders (`ot_...`), or the operator key.",
)


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent or another scheme."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def secrets_match(presented: str | None, expected: str) -> bool:
    """Constant-time equality; an empty expected secret never matches (an unset key opens nothing)."""
    if presented is None or not expected:
        return False
    return hmac.compare_digest(_digest(presented), _digest(expected))


def is_admin(token: str | None, settings: Settings) -> bool:
    return secrets_match(token, settings.admin_api_key.get_secret_value())


def _unauthorized() -> HTTPException:
    return HTTPException(
        status_code=401,
        detail="a valid operator API key is required (Authorization: Bearer <ADMIN_API_KEY>)",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_operator_scheme)],
) -> None:
    """Dependency for operator endpoints: 401 `unauthorized` with `WWW-Authenticate: Bearer` otherwise."""
    token = credentials.credentials if credentials else None
    if not is_admin(token, settings):
        raise _unauthorized()


async def order_bearer(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_order_scheme)],
) -> str | None:
    """The bearer token sent to an order endpoint, unchecked: the orders service decides what it opens."""
    return credentials.credentials if credentials else None


RequireAdmin = Depends(require_admin)
OrderBearer = Annotated[str | None, Depends(order_bearer)]
