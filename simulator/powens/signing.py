"""Powens's webhook signature (contract §5, the `hmac_signature` auth provider).

`BI-Signature-Date` is the UTC time of the attempt in ISO 8601 with microseconds and `Z`;
`BI-Signature` is base64(HMAC-SHA256(secret_key, "POST" + "." + <path of the webhook URL> + "." +
<BI-Signature-Date> + "." + <payload>)), standard base64 with padding. The payload is the webhook
data: the JSON bytes exactly as sent, before any gzip compression (see `docs/simulator.md`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import urlsplit


def signature_date(moment: datetime) -> str:
    """`2022-06-27T11:08:52.577831Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def endpoint_path(url: str) -> str:
    return urlsplit(url).path or "/"


def bi_signature(secret: str, *, method: str, path: str, date: str, payload: bytes) -> str:
    message = f"{method.upper()}.{path}.{date}.".encode() + payload
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
