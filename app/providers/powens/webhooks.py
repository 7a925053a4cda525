"""Verification of Powens `PAYMENT_STATE_UPDATED` webhooks (contracts/powens.md §5, HMAC mechanism).

Pure: the request as received (method, path, headers, raw body bytes), the secret and the current
time in; a `WebhookHint` or `WebhookRejected` (with a short reason, safe to log) out.

    BI-Signature = base64( HMAC-SHA256( secret_key,
                     METHOD + "." + path + "." + BI-Signature-Date + "." + raw body ) )

- The signature is standard base64 with padding, decoded strictly and compared in constant time
  (`hmac.compare_digest`).
- `path` is the request path only, never the query string (the contract says to register a
  webhook URL without one [?]). A proxy that rewrites the path in front of the service breaks
  verification: Powens signs the path it called.
- `BI-Signature-Date` (UTC ISO-8601, e.g. `2022-06-27T11:08:52.577831Z`) is required and must be
  within ±tolerance of now, both ways (no window is documented [?]; default ±600 s). A date without
  a zone is read as UTC, as the contract says the header is.
- gzip (`Content-Encoding: gzip`, Powens's `webhooks.compression.enabled`): the contract does not
  say which bytes the HMAC covers then [?]. The reading chosen is the simulator's
  (`simulator/powens/signing.py`): the HMAC covers the JSON payload **before** compression, i.e.
  the decompressed bytes, exactly as they come out of gzip (never re-serialised). The body is
  therefore decompressed before the signature is checked, with a hard cap
  (`MAX_DECOMPRESSED_BYTES`, 1 MiB) so a gzip bomb costs nothing; a truncated member, trailing
  data or any other content encoding is refused. Without compression the HMAC covers the raw body
  exactly as received.
- The body is the whole Payment resource plus an integer `id_webhook_data`, unique per delivery:
  it is the `delivery_id` the inbox deduplicates on. `id` (the payment, an integer) becomes the
  `provider_session_id`. A body that is not a JSON object, or whose ids are not integers, is
  refused.

The body is signed with a secret only Powens and the merchant hold, so its content is authentic;
the service still treats it as a hint (`WebhookHint.snapshot` stays None) and reads the payment
from the API before applying anything, as it does for every provider. An older delivery arriving late
can then never override a newer state: what is applied is always Powens's current answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app.providers.base import WebhookHint, WebhookMalformed, WebhookRejected, WebhookRequest
from app.providers.powens.payloads import is_payment_id
from app.validation import UnsafeJson, load_json_object

EVENT_TYPE = "PAYMENT_STATE_UPDATED"
SIGNATURE_HEADER = "bi-signature"
DATE_HEADER = "bi-signature-date"
MAX_DECOMPRESSED_BYTES = 1024 * 1024  # 1 MiB: far above any payment, far below a bomb
MAX_SIGNATURE_LENGTH = 128
MAX_DATE_LENGTH = 64
# Powens's ids are database integers: a delivery id past a signed 64-bit one is not theirs.
MAX_DELIVERY_ID = 2**63

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$")


def signing_message(method: str, path: str, date: str, body: bytes) -> bytes:
    """What Powens signs: `METHOD.path.date.body`."""
    return f"{method.upper()}.{path}.{date}.".encode() + body


def signature(secret: bytes, method: str, path: str, date: str, body: bytes) -> str:
    """The BI-Signature value for these parts (standard base64, padded)."""
    digest = hmac.new(secret, signing_message(method, path, date, body), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in lowered:
            # Two spellings of one header in a plain dict: ambiguous, refuse.
            raise WebhookRejected(f"duplicate {key} header")
        lowered[key] = value
    return lowered


def parse_signature_date(value: str) -> datetime:
    """The BI-Signature-Date header as an aware datetime; WebhookRejected when it is not one."""
    value = value.strip()
    if len(value) > MAX_DATE_LENGTH or not _DATE.match(value):
        raise WebhookRejected("BI-Signature-Date is not an ISO-8601 date")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRejected("BI-Signature-Date is not an ISO-8601 date") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _check_signature(value: str, expected: bytes) -> None:
    value = value.strip()
    if len(value) > MAX_SIGNATURE_LENGTH:
        raise WebhookRejected("BI-Signature is too long")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("BI-Signature is not base64") from None
    if len(decoded) != hashlib.sha256().digest_size:
        raise WebhookRejected("BI-Signature is not an HMAC-SHA256")
    if not hmac.compare_digest(decoded, expected):
        raise WebhookRejected("BI-Signature does not match")


def decompress(body: bytes, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """One gzip member, at most `limit` bytes once inflated; WebhookRejected otherwise."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise WebhookRejected("body is not valid gzip") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise WebhookRejected("decompressed body is too large")
    if not inflater.eof:
        raise WebhookRejected("gzip body is truncated")
    if inflater.unused_data:
        raise WebhookRejected("gzip body has trailing data")
    return data


def _content(lowered: Mapping[str, str], body: bytes) -> bytes:
    encoding = lowered.get("content-encoding", "").strip().lower()
    if encoding in {"", "identity"}:
        return body
    if encoding in {"gzip", "x-gzip"}:
        return decompress(body)
    raise WebhookRejected("unsupported Content-Encoding")


def _parse_body(content: bytes) -> dict[str, Any]:
    """The authenticated payload as a dict that can be stored as JSONB; WebhookMalformed otherwise."""
    try:
        return load_json_object(content.decode("utf-8"))
    except UnicodeDecodeError:
        raise WebhookMalformed("body is not UTF-8") from None
    except UnsafeJson as exc:
        raise WebhookMalformed(str(exc)) from None


def verify_webhook(
    request: WebhookRequest,
    *,
    secret: bytes | None,
    now: datetime,
    tolerance_seconds: int,
) -> WebhookHint:
    """Authenticate one delivery and say which payment it is about. Raises WebhookRejected."""
    if not secret:
        raise WebhookRejected("webhook secret not configured")
    lowered = _lower_headers(request.headers)
    signature_value = lowered.get(SIGNATURE_HEADER, "").strip()
    date_value = lowered.get(DATE_HEADER, "").strip()
    if not signature_value:
        raise WebhookRejected("missing BI-Signature header")
    if not date_value:
        raise WebhookRejected("missing BI-Signature-Date header")
    sent_at = parse_signature_date(date_value)

    # The signed payload: the raw body, or what a gzip body decompresses to (capped).
    content = _content(lowered, request.raw_body)
    expected = hmac.new(
        secret, signing_message(request.method, request.path, date_value, content), hashlib.sha256
    ).digest()
    _check_signature(signature_value, expected)

    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if abs((now - sent_at).total_seconds()) > tolerance_seconds:
        raise WebhookRejected("BI-Signature-Date is outside the accepted window")

    payload = _parse_body(content)
    payment = payload.get("id")
    if not is_payment_id(payment):
        raise WebhookMalformed("body has no integer payment id")
    delivery = payload.get("id_webhook_data")
    if not isinstance(delivery, int) or isinstance(delivery, bool) or not 0 <= delivery < MAX_DELIVERY_ID:
        raise WebhookMalformed("body has no integer id_webhook_data")
    return WebhookHint(
        delivery_id=str(delivery),
        provider_session_id=str(payment),
        event_type=EVENT_TYPE,
        content_type=lowered.get("content-type"),
        payload=payload,
    )
