"""What every Fintecture API call goes through: the request log, injected faults, access tokens
and request signatures (contract §2)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from simulator.config import AppConfig
from simulator.errors import ApiError, error_response
from simulator.fintecture.engine import Simulator
from simulator.fintecture.signing import SignatureError, verify_request

API_PREFIXES = ("/oauth/", "/pis/")


def get_sim(request: Request) -> Simulator:
    sim: Simulator = request.app.state.sim
    return sim


def note_caller(
    request: Request, *, app_id: str | None = None, signed: bool = False, verified: bool = False
) -> None:
    """Remember who called and how the call was signed, for the request log."""
    if app_id is not None:
        request.state.sim_app_id = app_id
    request.state.sim_signed = signed
    request.state.sim_verified = verified


def check_signature(request: Request, app: AppConfig, body: bytes, *, required: bool) -> None:
    sim = get_sim(request)
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
    sim = get_sim(request)
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


_FAULT_CODES = {429: "too_many_requests", 500: "internal_server_error", 503: "service_unavailable"}


async def api_gate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Middleware for the API paths: catch up with the clock, log the call, inject faults."""
    path = request.url.path
    if not path.startswith(API_PREFIXES):
        return await call_next(request)
    sim = get_sim(request)
    sim.tick()
    entry = sim.store.record_request(
        at=sim.clock.now(),
        method=request.method,
        path=path,
        query=request.url.query,
        headers=dict(request.headers),
        body=await request.body(),
    )
    latency = sim.faults.api_latency(path)
    if latency:
        entry.fault = f"latency {latency:g}s"
        await asyncio.sleep(latency)
    fault = sim.faults.api_error(path)
    if fault is not None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        error = ApiError(
            fault.status, _FAULT_CODES[fault.status], "injected by the simulator", headers=headers
        )
        entry.fault = f"error {fault.status}"
        entry.status_code, entry.error_code = fault.status, error.sub_code
        return error_response(error)
    response = await call_next(request)
    entry.status_code = response.status_code
    entry.app_id = getattr(request.state, "sim_app_id", None)
    entry.signed = getattr(request.state, "sim_signed", False)
    entry.verified = getattr(request.state, "sim_verified", False)
    entry.error_code = getattr(request.state, "sim_error_code", None)
    return response
