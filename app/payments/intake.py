"""What the webhook inbox can store, checked before a verified delivery is recorded.

A provider's verifier authenticates a delivery and reads which payment it is about; what it hands
back must still fit the inbox's columns. An identifier longer than its column, a control character
in one, or a payload JSONB refuses (NUL, an unpaired surrogate, NaN, nesting without end) would
otherwise fail the INSERT: a 500, and the provider retrying it for hours. Whoever can sign a
delivery, or forge one where signing is public-key encryption, can send any of these.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String

from app.models import ProviderEvent
from app.providers.base import WebhookHint, WebhookMalformed
from app.validation import json_problem, text_problem


def _length(column: Any) -> int:
    column_type = column.type
    assert isinstance(column_type, String) and column_type.length is not None
    return int(column_type.length)


# The inbox's short text columns, and what a refusal calls each.
_TEXT_FIELDS = (
    ("delivery_id", "delivery id", _length(ProviderEvent.delivery_id)),
    ("provider_session_id", "payment id", _length(ProviderEvent.provider_session_id)),
    ("event_type", "event type", _length(ProviderEvent.event_type)),
    ("content_type", "Content-Type", _length(ProviderEvent.content_type)),
)


def check_storable(hint: WebhookHint) -> None:
    """Raise WebhookMalformed when `hint` cannot be recorded in the inbox as it is."""
    for attribute, label, max_length in _TEXT_FIELDS:
        value = getattr(hint, attribute)
        if value is None:
            continue
        problem = text_problem(value, max_length)
        if problem is not None:
            raise WebhookMalformed(f"{label} {problem}")
    problem = json_problem(dict(hint.payload))
    if problem is not None:
        raise WebhookMalformed(problem)
