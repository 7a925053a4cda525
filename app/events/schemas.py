"""Operator views of outbound events and their deliveries; the inbound replay's request and answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.models import DeliveryStatus, InboxOutcome, OutboundDelivery, OutboundDeliveryAttempt, OutboundEvent


class AttemptOut(BaseModel):
    """One HTTP attempt to deliver an event to an endpoint."""

    model_config = ConfigDict(from_attributes=True)

    attempted_at: datetime = Field(description="When it was sent")
    status_code: int | None = Field(description="The endpoint's HTTP status; null when it did not answer")
    error: str | None = Field(description="What went wrong (a timeout, a refused connection...), if anything")
    duration_ms: int = Field(description="How long the endpoint took to answer, in milliseconds")


class DeliveryOut(BaseModel):
    """An event's delivery to one of the merchant's endpoints (MERCHANT_WEBHOOK_URLS)."""

    endpoint_url: str = Field(description="The endpoint")
    status: DeliveryStatus = Field(description="Where the delivery stands")
    attempts: int = Field(description="Attempts since it was last made due")
    next_attempt_at: datetime | None = Field(description="When it is sent next; null unless pending")
    last_error: str | None = Field(description="The last attempt's error, if any")
    delivered_at: datetime | None = Field(description="When the endpoint answered 2xx")
    parked_at: datetime | None = Field(description="When it was given up after its last attempt")
    attempt_log: list[AttemptOut] = Field(description="Every HTTP attempt, oldest first")

    @classmethod
    def of(cls, delivery: OutboundDelivery, attempts: list[OutboundDeliveryAttempt]) -> DeliveryOut:
        return cls(
            endpoint_url=delivery.endpoint_url,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if delivery.status is DeliveryStatus.PENDING else None,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
            parked_at=delivery.parked_at,
            attempt_log=[AttemptOut.model_validate(a) for a in attempts],
        )


_EVENT_EXAMPLE: dict[str, Any] = {
    "id": "evt_5f0c3c7e0b8d4a8f9a51c1f0f3c2b1aa",
    "type": "order.paid",
    "order_id": "0b7e6a52-3f7e-4a4e-9a57-3c1f5d1e2a10",
    "refund_id": None,
    "payout_id": None,
    "data": {"order_id": "0b7e6a52-3f7e-4a4e-9a57-3c1f5d1e2a10", "status": "paid"},
    "created_at": "2026-12-02T17:00:00Z",
    "routed": True,
    "deliveries": [],
}


class OutboundEventOut(BaseModel):
    """An event sent to the merchant's systems (Standard Webhooks), with its deliveries."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT_EXAMPLE]})

    id: str = Field(description="The `webhook-id` every attempt carries")
    type: str = Field(description="e.g. `order.paid`, `refund.succeeded`, `payout.failed`")
    order_id: uuid.UUID | None = Field(description="The order it is about, if any")
    refund_id: uuid.UUID | None = Field(description="The refund it is about, if any")
    payout_id: uuid.UUID | None = Field(description="The payout it is about, if any")
    data: dict[str, Any] = Field(description="The payload's `data`")
    created_at: datetime = Field(description="When it was recorded (with the change it tells)")
    routed: bool = Field(description="Whether the dispatcher has given it its deliveries yet")
    deliveries: list[DeliveryOut] = Field(description="One per endpoint")

    @classmethod
    def of(
        cls,
        event: OutboundEvent,
        deliveries: list[tuple[OutboundDelivery, list[OutboundDeliveryAttempt]]],
    ) -> OutboundEventOut:
        return cls(
            id=event.webhook_id,
            type=event.type,
            order_id=event.order_id,
            refund_id=event.refund_id,
            payout_id=event.payout_id,
            data=event.data,
            created_at=event.created_at,
            routed=event.routed_at is not None,
            deliveries=[DeliveryOut.of(d, attempts) for d, attempts in deliveries],
        )


class OutboundEventPage(BaseModel):
    """A page of outbound events, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_EVENT_EXAMPLE], "next_cursor": None}]}
    )

    items: list[OutboundEventOut] = Field(description="The events")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class ReplayOut(BaseModel):
    """How many deliveries a replay made due again."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"replayed": 2}]})

    replayed: int = Field(description="Deliveries made due again")


class InboundReplayRequest(BaseModel):
    """Which stored provider events to process again; at least one criterion."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"outcome": "gave_up"}, {"event_ids": [41, 42]}]},
    )

    event_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        default=None, min_length=1, max_length=1000, description="Inbox event ids"
    )
    provider: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^[a-z0-9_-]+$",
        description="Only this provider's events",
    )
    received_from: datetime | None = Field(default=None, description="Received at or after (ISO 8601)")
    received_to: datetime | None = Field(default=None, description="Received before (ISO 8601)")
    outcome: InboxOutcome | None = Field(default=None, description="`applied` or `gave_up`")

    @model_validator(mode="after")
    def _some_criterion(self) -> InboundReplayRequest:
        if not any(
            value is not None
            for value in (self.event_ids, self.provider, self.received_from, self.received_to, self.outcome)
        ):
            raise ValueError("name the events to replay: event_ids, provider, received_from/to or outcome")
        for name in ("received_from", "received_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (e.g. 2026-12-02T10:00:00Z)")
        if self.received_from and self.received_to and self.received_from >= self.received_to:
            raise ValueError("received_from must be before received_to")
        return self


class InboundReplayOut(BaseModel):
    """The stored provider events made due again."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"replayed": 2, "event_ids": [41, 42]}]})

    replayed: int = Field(description="Provider events made due again")
    event_ids: list[int] = Field(description="Their ids")
