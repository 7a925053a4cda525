"""POST /oauth/accesstoken: client-credentials tokens for the PIS scope (contract §1)."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request

from simulator.errors import ApiError
from simulator.fintecture.auth import check_signature, get_fintecture
from simulator.guard import note_caller

router = APIRouter(tags=["OAuth"])

_FORM_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "scope"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "app_id": {"type": "string"},
                        "scope": {"type": "string", "enum": ["PIS"]},
                        "client_id": {
                            "type": "string",
                            "description": "With client_secret: instead of Basic",
                        },
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    }
}


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(
            401, "invalid_app_id", "the Basic credentials are not base64(app_id:app_secret)"
        ) from exc
    app_id, sep, secret = decoded.partition(":")
    if not sep:
        raise ApiError(401, "invalid_app_id", "the Basic credentials are not base64(app_id:app_secret)")
    return app_id, secret


@router.post(
    "/oauth/accesstoken",
    operation_id="createAccessToken",
    summary="Create an access token (client_credentials, scope PIS)",
    description=(
        "Credentials as `Authorization: Basic base64(app_id:app_secret)` (the official way) or as "
        "`client_id`/`client_secret` form fields. A Signature, when sent, is verified."
    ),
    openapi_extra=_FORM_DOC,
)
async def create_access_token(request: Request) -> dict[str, Any]:
    sim = get_fintecture(request)
    body = await request.body()
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise ApiError(400, "invalid_field", "Content-Type must be application/x-www-form-urlencoded")
    form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))

    credentials = _basic_credentials(request.headers.get("authorization", ""))
    if credentials is None and form.get("client_id"):
        credentials = form["client_id"], form.get("client_secret", "")
    if credentials is None:
        raise ApiError(401, "invalid_app_id", "send Authorization: Basic base64(app_id:app_secret)")
    app_id, secret = credentials
    app = sim.app(app_id)
    if app is None or not hmac.compare_digest(app.app_secret.encode(), secret.encode()):
        raise ApiError(401, "invalid_app_id", "unknown app_id or wrong app_secret")
    note_caller(request, app_id=app.app_id)
    if form.get("app_id") and form["app_id"] != app.app_id:
        raise ApiError(401, "invalid_app_id", "the app_id field does not match the credentials")
    # Not every official SDK signs the token call, so it is checked only when signed.
    check_signature(request, app, body, required=False)

    grant_type = form.get("grant_type")
    if not grant_type:
        raise ApiError(400, "mandatory_field_missing", "grant_type is required")
    if grant_type != "client_credentials":
        raise ApiError(400, "invalid_field", "grant_type must be client_credentials")
    scope = form.get("scope")
    if not scope:
        raise ApiError(400, "mandatory_field_missing", "scope is required (PIS)")
    if scope.upper() != "PIS":
        raise ApiError(401, "invalid_scopes", "this application may only ask for the PIS scope")

    token = sim.store.issue_token(app.app_id, sim.clock.now(), sim.config.token_ttl_seconds)
    return {"token_type": "Bearer", "access_token": token.value, "expires_in": sim.config.token_ttl_seconds}
