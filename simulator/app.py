"""The simulator as one FastAPI application: Fintecture's API, its hosted page, and `/_sim` controls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator import routes_control
from simulator.config import SimulatorConfig
from simulator.errors import TOP_LEVEL_CODES, ApiError, ErrorItem, error_response
from simulator.fintecture import routes_connect, routes_oauth, routes_pis
from simulator.fintecture.engine import Simulator
from simulator.fintecture.schemas import validation_error
from simulator.guard import api_gate


def create_app(config: SimulatorConfig) -> FastAPI:
    sim = Simulator(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    app = FastAPI(
        title="Fintecture simulator",
        description="A stand-in for Fintecture's PIS API, hosted Connect page and webhooks.",
        version="1",
        lifespan=lifespan,
    )
    app.state.sim = sim

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        request.state.sim_error_code = exc.sub_code
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return await on_api_error(request, validation_error(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = TOP_LEVEL_CODES.get(exc.status_code, "error")
        error = ApiError.many(exc.status_code, [ErrorItem(code, str(exc.detail))])
        error.headers = dict(exc.headers or {})
        return await on_api_error(request, error)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.middleware("http")(api_gate)

    app.include_router(routes_oauth.router)
    app.include_router(routes_pis.router)
    app.include_router(routes_connect.router)
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


def _document_errors(app: FastAPI) -> None:
    """Validation errors are answered as 400 in Fintecture's shape, not FastAPI's 422: say so."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
            for path in schema["paths"].values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    responses["400"] = {
                        "description": "Invalid request",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
