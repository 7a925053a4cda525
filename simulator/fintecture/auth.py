"""Who is calling Fintecture's API: access tokens and request signatures (contract §2)."""

from __future__ import annotations

from fastapi import Request

from simulator.errors import ApiError
from simulator.fintecture.config import AppConfig
from simulator.fintecture.engine import FintectureSim
from simulator.fintecture.signing import SignatureError, verify_request
from simulator.guard import note_caller


def get_fintecture(request: Request) -> FintectureSim:
    fintecture: FintectureSim = request.app.state.fintecture
    return fintecture


def check_signature(request: Request, app: AppConfig, body: bytes, *, required: bool) -> None:
    sim = get_fintecture(request)
    try:
        result = verify_request(
            app_id=app.app_id,
            public_key=app.public_key,
            method=request.method,
            raw_path=request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=request.headers,
            body=body,
            required=required,
            now=sim.clock.now(),
            date_tolerance=sim.config.request_date_tolerance_seconds,
        )
    except SignatureError as exc:
        note_caller(request, app_id=app.app_id, signed="signature" in request.headers)
        raise ApiError(401, "invalid_signature", str(exc)) from exc
    note_caller(request, app_id=app.app_id, signed=result.signed, verified=result.verified)


async def pis_app(request: Request) -> AppConfig:
    """The application behind a PIS call: a live Bearer token, then the signature (required in
    strict mode, checked when present in lenient mode)."""
    sim = get_fintecture(request)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "invalid_token", "an access token is required: Authorization: Bearer <token>")
    token = sim.store.token(value.strip())
    if token is None:
        raise ApiError(401, "invalid_token", "unknown access token")
    if token.expires_at <= sim.clock.now():
        raise ApiError(401, "invalid_token", "the access token has expired")
    app = sim.app(token.app_id)
    if app is None:
        raise ApiError(401, "invalid_token", "the access token's application is gone")
    note_caller(request, app_id=app.app_id)
    check_signature(request, app, await request.body(), required=app.mode == "strict")
    return app
