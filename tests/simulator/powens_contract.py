"""Powens's webhook signature written from the contract (contracts/powens.md §5), with the standard
library only and independently of the simulator's code, so the tests check the simulator against
the contract.

BI-Signature = base64(HMAC-SHA256(secret_key, "POST" + "." + <endpoint path> + "." +
<BI-Signature-Date> + "." + <payload>)); the payload is the webhook data, i.e. the JSON bytes once
any gzip transfer encoding is undone (the simulator's documented reading).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

SIGNATURE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


class PowensWebhookRejected(AssertionError):
    pass


def expected_signature(secret: str, path: str, date: str, payload: bytes) -> str:
    message = b"POST" + b"." + path.encode() + b"." + date.encode() + b"." + payload
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def payload_of(headers: Mapping[str, str], raw_body: bytes) -> bytes:
    if headers.get("content-encoding", "").lower() == "gzip":
        return gzip.decompress(raw_body)
    return raw_body


def verify_powens_webhook(
    headers: Mapping[str, str], raw_body: bytes, *, path: str, secret: str
) -> tuple[dict[str, Any], datetime]:
    """The merchant's check: recompute the HMAC over the payload, compare in constant time."""
    date = headers["bi-signature-date"]
    if not SIGNATURE_DATE.fullmatch(date):
        raise PowensWebhookRejected(f"BI-Signature-Date {date!r} is not UTC ISO 8601 with microseconds")
    payload = payload_of(headers, raw_body)
    wanted = expected_signature(secret, path, date, payload)
    if not hmac.compare_digest(wanted.encode(), headers["bi-signature"].encode()):
        raise PowensWebhookRejected("BI-Signature does not match")
    sent_at = datetime.strptime(date, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    data: dict[str, Any] = json.loads(payload)
    return data, sent_at
