from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models import PaymentSession


class PaymentSessionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"provider": "fintecture", "language": "fr", "bank_id": "ftecfr"}]},
    )

    provider: Literal["fintecture"] = "fintecture"
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$", description="Connect page language")
    bank_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Preselect the payer's bank at the provider",
    )


class PaymentSessionResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session_id": "5b1c0a64-3f5e-4a53-9a57-0c1f2f6b1f11",
                    "provider": "fintecture",
                    "provider_session_id": "b2bca2bcd3b64a32a7e5d6d9b0c1e2f3",
                    "status": "awaiting_payment",
                    "connect_url": "https://connect.fintecture.com/v2/b2bca2bc",
                    "expires_at": "2026-11-21T10:30:00+00:00",
                }
            ]
        }
    )

    session_id: str
    provider: str
    provider_session_id: str
    status: str
    connect_url: str
    expires_at: datetime

    @classmethod
    def of(cls, session: PaymentSession) -> PaymentSessionResponse:
        return cls(
            session_id=str(session.id),
            provider=session.provider,
            provider_session_id=session.provider_session_id,
            status=session.status,
            connect_url=session.connect_url,
            expires_at=session.expires_at,
        )


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool


class SyncResponse(BaseModel):
    order_id: str
    status: str
    session_status: str
    changed: bool
