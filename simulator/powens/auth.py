"""Who is calling Powens's API: service tokens and their scopes (contract §1).

Powens signs no request: a call carries `Authorization: Bearer <token>`, a service token from
`POST /auth/token`, valid 30 minutes on the simulator's clock. Payment-scoped tokens are for the
webview only.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request

from simulator.config import PowensAppConfig
from simulator.guard import note_caller
from simulator.powens.engine import PowensSim, Token
from simulator.powens.errors import PowensError


def get_powens(request: Request) -> PowensSim:
    powens: PowensSim = request.app.state.powens
    return powens


async def service_token(request: Request) -> Token:
    """The live service token of the call (401 otherwise)."""
    powens = get_powens(request)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise PowensError(401, "unauthorized", "An access token is required: Authorization: Bearer <token>")
    token = powens.tokens.get(value.strip())
    if token is None:
        raise PowensError(401, "unauthorized", "Unknown access token")
    note_caller(request, app_id=token.client_id)
    if token.expires_at <= powens.clock.now():
        raise PowensError(401, "unauthorized", "The access token has expired")
    if powens.app(token.client_id) is None:
        raise PowensError(401, "unauthorized", "The access token's client is gone")
    if token.payment_id is not None:
        raise PowensError(403, "forbidden", "A payment-scoped token is only accepted by the webview")
    return token


def client_of(request: Request, token: Token) -> PowensAppConfig:
    app = get_powens(request).app(token.client_id)
    assert app is not None  # service_token checked it
    return app


def require(token: Token, allowed: Iterable[str], what: str) -> None:
    allowed = frozenset(allowed)
    if not token.scopes & allowed:
        raise PowensError(403, "forbidden", f"{what} needs one of the scopes {', '.join(sorted(allowed))}")
