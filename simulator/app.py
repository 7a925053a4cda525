"""The simulator as one FastAPI application: every provider's API and hosted pages, and `/_sim`.

`create_app` builds the shared core, plugs each provider in, and answers each provider's errors
in that provider's format: a framework error (validation, unknown path, wrong method) on a
provider's API paths is converted by that provider; elsewhere (`/_sim`, pages) it takes the
simulator's own shape (`simulator/errors.py`).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator import routes_control
from simulator.config import SimulatorConfig
from simulator.core import Simulator
from simulator.errors import TOP_LEVEL_CODES, ApiError, ErrorItem, error_response, validation_error
from simulator.fintecture import routes_connect, routes_oauth, routes_pis
from simulator.fintecture import routes_control as fintecture_control
from simulator.fintecture.engine import FintectureSim
from simulator.guard import api_gate, get_sim, note_error
from simulator.powens import errors as powens_errors
from simulator.powens import routes_api as powens_api
from simulator.powens import routes_control as powens_control
from simulator.powens import routes_webview as powens_webview
from simulator.powens.engine import API_PREFIX as POWENS_API_PREFIX
from simulator.powens.engine import PowensSim


def create_app(config: SimulatorConfig) -> FastAPI:
    sim = Simulator(config)
    fintecture = FintectureSim(sim)
    powens = PowensSim(sim)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    app = FastAPI(
        title="Provider simulator",
        description=(
            "A stand-in for Fintecture's PIS API, hosted Connect page and webhooks, and for Powens "
            "Pay's API, webview and webhooks; `/_sim` drives them."
        ),
        version="2",
        lifespan=lifespan,
    )
    app.state.sim = sim
    app.state.fintecture = fintecture
    app.state.powens = powens

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        note_error(request, exc.sub_code)
        return error_response(exc)

    async def on_powens_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, powens_errors.PowensError)
        note_error(request, exc.code)
        return powens_errors.error_response(exc)

    def framework_error(request: Request, exc: Exception) -> Exception:
        """A validation or HTTP error raised by the framework, in the format of whoever answers."""
        provider = get_sim(request).provider_for(request.url.path)
        converted = provider.request_error(exc) if provider is not None else None
        if converted is not None:
            return converted
        if isinstance(exc, RequestValidationError):
            return validation_error(exc.errors())
        assert isinstance(exc, StarletteHTTPException)
        error = ApiError.many(
            exc.status_code, [ErrorItem(TOP_LEVEL_CODES.get(exc.status_code, "error"), str(exc.detail))]
        )
        error.headers = dict(exc.headers or {})
        return error

    async def on_framework_error(request: Request, exc: Exception) -> Response:
        converted = framework_error(request, exc)
        handler = app.exception_handlers[type(converted)]
        response = handler(request, converted)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(powens_errors.PowensError, on_powens_error)
    app.add_exception_handler(RequestValidationError, on_framework_error)
    app.add_exception_handler(StarletteHTTPException, on_framework_error)
    app.middleware("http")(api_gate)

    app.include_router(routes_oauth.router)
    app.include_router(routes_pis.router)
    app.include_router(routes_connect.router)
    app.include_router(fintecture_control.router)
    app.include_router(powens_api.router)
    app.include_router(powens_webview.router)
    app.include_router(powens_control.router)
    app.include_router(routes_control.router)
    _document_errors(app)
    return app


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "examples": ["400"]},
        "code": {"type": "string", "examples": ["bad_request"]},
        "log_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "examples": ["invalid_field"]},
                    "status": {"type": "string"},
                    "title": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}


_POWENS_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "examples": ["invalidValue"]},
        "description": {"type": "string"},
        "message": {"type": ["string", "null"]},
        "request_id": {"type": "string"},
    },
}


def _document_errors(app: FastAPI) -> None:
    """Validation errors are answered as 400 in the provider's shape, not FastAPI's 422: say so."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Error"] = _ERROR_SCHEMA
            schemas["PowensError"] = _POWENS_ERROR_SCHEMA
            for route, path in schema["paths"].items():
                error = "PowensError" if route.startswith(POWENS_API_PREFIX) else "Error"
                reference = {"$ref": f"#/components/schemas/{error}"}
                for operation in path.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    responses["400"] = {
                        "description": "Invalid request",
                        "content": {"application/json": {"schema": reference}},
                    }
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
