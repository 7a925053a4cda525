"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.deps import EngineDep
from app.migrations_info import current_revision, head_revision

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    """The process answers."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str = Field(description="Always `ok`")


@router.get(
    "/healthz",
    summary="The process is up",
    description="Liveness: answers 200 as long as the process serves requests; reads nothing. Public.",
    response_model=Liveness,
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


_NOT_READY = {
    "status": "unavailable",
    "database": "not migrated",
    "migration": "0005",
    "expected_migration": "0006",
    "detail": None,
}


class Readiness(BaseModel):
    """Whether the service can serve: its database is reachable and migrated to the code's head."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "database": "ok",
                    "migration": "0006",
                    "expected_migration": None,
                    "detail": None,
                }
            ]
        }
    )

    status: str = Field(description="`ready` or `unavailable`")
    database: str = Field(description="`ok`, `unreachable` or `not migrated`")
    migration: str | None = Field(default=None, description="The database's migration")
    expected_migration: str | None = Field(default=None, description="The code's, when they differ")
    detail: str | None = Field(default=None, description="Why the database could not be read")


@router.get(
    "/readyz",
    summary="The database is reachable and migrated to head",
    description=(
        "Readiness: 200 when the database answers and its migration is the code's head; 503 with the "
        "reason otherwise (never the error shape: a load balancer reads `status`). Public."
    ),
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "Not ready: the database is unreachable or behind",
            "content": {"application/json": {"example": _NOT_READY}},
        }
    },
)
async def readyz(engine: EngineDep) -> JSONResponse:
    body: dict[str, Any] = {"status": "ready", "database": "ok"}
    expected = head_revision()
    try:
        async with engine.connect() as conn:
            current = await current_revision(conn)
    except Exception as exc:  # any failure to reach or read the database means "not ready"
        body = {"status": "unavailable", "database": "unreachable", "detail": type(exc).__name__}
        return JSONResponse(body, status_code=503)
    body["migration"] = current
    if current != expected:
        body.update(status="unavailable", database="not migrated", expected_migration=expected)
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
