"""Verification of Fintecture webhooks (contracts/fintecture.md §3, "recommended merchant verification").

Pure: the request as received (headers, raw body bytes) and the current time in, a `WebhookHint`
or `WebhookRejected` out.
The digest is computed over the raw bytes received (never over a re-encoded form), the date is
checked in both directions, and every check that fails gives a short reason that is safe to log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives.asymmetric import rsa

from app.providers.base import WebhookHint, WebhookMalformed, WebhookRejected, WebhookRequest
from app.providers.fintecture.signing import (
    SIGNATURE_ALGORITHM,
    WEBHOOK_SIGNED_HEADERS,
    SignatureHeaderError,
    decrypt_webhook_signature,
    parse_signature_header,
    webhook_plaintext,
)
from app.validation import UnsafeJson, forbidden_character, json_problem, load_json_object, text_problem

# The inbox's delivery id column.
MAX_REQUEST_ID_LENGTH = 128
# keyId, algorithm, the signed header names and one RSA block in base64 (684 characters for a
# 4096-bit key): anything longer is refused before it is parsed or decrypted.
MAX_SIGNATURE_HEADER_LENGTH = 2048


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in lowered:
            # Two spellings of one header in a plain dict: ambiguous, refuse.
            raise WebhookRejected(f"duplicate {key} header")
        lowered[key] = value
    return lowered


# The IMF-fixdate every sender writes (`Thu, 03 Dec 2026 08:50:49 GMT`), read without the general
# parser; anything else, an impossible date included, goes to `parsedate_to_datetime` (which
# reads a year below 100 as 19xx or 20xx: a year written with a leading 0 is left to it too).
_IMF_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([1-9]\d{3}) (\d\d):(\d\d):(\d\d) GMT",
    re.ASCII,
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}


def _parse_http_date(value: str) -> datetime:
    match = _IMF_FIXDATE.fullmatch(value)
    if match is not None:
        day, month, year, hour, minute, second = match.groups()
        try:
            return datetime(
                int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC
            )
        except ValueError:
            pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise WebhookRejected("Date header is not an RFC 2822 date") from exc
    if moment is None:  # older Pythons returned None for garbage
        raise WebhookRejected("Date header is not an RFC 2822 date")
    # `-0000` (and a missing zone) parse as naive: RFC 2822 says the time is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _check_digest(header: str, body: bytes) -> None:
    """The Digest header must carry SHA-256 of the raw body bytes."""
    expected = base64.b64encode(hashlib.sha256(body).digest())
    found = False
    for item in header.split(","):
        algorithm, sep, value = item.strip().partition("=")
        if not sep or algorithm.strip().lower() != "sha-256":
            continue
        found = True
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected("Digest header is not base64") from None
        if not hmac.compare_digest(base64.b64encode(decoded), expected):
            raise WebhookRejected("Digest header does not match the body")
    if not found:
        raise WebhookRejected("Digest header has no SHA-256 value")


def form_fields(text: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, strict_parsing=True)`, the same pairs and the same
    ValueError (a field without `=`, an empty field), for a non-empty `text`; [] for an empty one.

    A part is unquoted only when it has something to unquote (`%` or `+`), which is what
    `parse_qsl` gets to by a longer road: a third of its time on a webhook's body of ten fields.
    """
    if not text:
        return []
    pairs = []
    for field in text.split("&"):
        name, sep, value = field.partition("=")
        if not sep:
            raise ValueError(f"bad form field: {field[:64]!r}")
        pairs.append((_form_unquote(name), _form_unquote(value)))
    return pairs


def _form_unquote(part: str) -> str:
    return unquote(part.replace("+", " ")) if "%" in part or "+" in part else part


def _parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The authenticated body as a dict that can be stored as JSONB; WebhookMalformed otherwise."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookMalformed("body is not UTF-8") from None
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            return load_json_object(text)
        except UnsafeJson as exc:
            raise WebhookMalformed(str(exc)) from None
    # Form encoding is the provider's default, also when the Content-Type is missing.
    try:
        pairs = form_fields(text)
    except ValueError:
        raise WebhookMalformed("body is not valid form data") from None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            shown = key[:64] if forbidden_character(key) is None else repr(key[:64])
            raise WebhookMalformed(f"repeated form field {shown}")
        fields[key] = value
    problem = json_problem(fields)
    if problem is not None:
        raise WebhookMalformed(problem.replace("JSON", "form body"))
    return fields


def verify_webhook(
    request: WebhookRequest,
    *,
    private_key: rsa.RSAPrivateKey | None,
    app_id: str,
    now: datetime,
    tolerance_seconds: int,
) -> WebhookHint:
    """Authenticate one delivery and say which session it is about. Raises WebhookRejected.

    Only the headers and the raw body are checked: Fintecture signs neither the method nor the
    path (no `(request-target)` in a webhook's signed header list), so `request.method` and
    `request.path` play no part, and a signed pseudo-header is refused below.
    """
    if private_key is None:
        raise WebhookRejected("webhook verification key not configured")
    body = request.raw_body
    lowered = _lower_headers(request.headers)
    for name in ("signature", *WEBHOOK_SIGNED_HEADERS):
        if not lowered.get(name, "").strip():
            raise WebhookRejected(f"missing {name} header")

    if len(lowered["signature"]) > MAX_SIGNATURE_HEADER_LENGTH:
        raise WebhookRejected("Signature header is too long")
    try:
        params = parse_signature_header(lowered["signature"])
    except SignatureHeaderError as exc:
        raise WebhookRejected(str(exc)) from None
    if "signature" not in params or not params["signature"]:
        raise WebhookRejected("Signature header has no signature")
    if params.get("keyid") != app_id:  # the provider always names the application it signs for
        raise WebhookRejected("Signature keyId is not this application")
    if "algorithm" in params and params["algorithm"].lower() != SIGNATURE_ALGORITHM:
        raise WebhookRejected("unsupported Signature algorithm")
    if "headers" not in params:
        raise WebhookRejected("Signature header lists no headers")
    names = params["headers"].lower().split()
    if len(set(names)) != len(names):
        raise WebhookRejected("Signature lists a header twice")
    if not set(WEBHOOK_SIGNED_HEADERS) <= set(names):
        raise WebhookRejected("Signature does not cover date, digest and x-request-id")
    for name in names:
        if name.startswith("("):
            raise WebhookRejected(f"unsupported signed pseudo-header {name}")
        if name not in lowered:
            raise WebhookRejected(f"signed header {name} is missing")

    try:
        plaintext = decrypt_webhook_signature(private_key, params["signature"])
    except ValueError as exc:
        raise WebhookRejected(str(exc)) from None
    expected = webhook_plaintext(names, lowered).encode("utf-8")
    if not hmac.compare_digest(plaintext, expected):
        # Name the first signed line that differs (the values are headers, not secrets).
        got_lines = plaintext.split(b"\n")
        for index, name in enumerate(names):
            line = f"{name}: {lowered[name]}".encode()
            if index >= len(got_lines) or got_lines[index] != line:
                raise WebhookRejected(f"signed {name} does not match the {name} header")
        raise WebhookRejected("signed content does not match the headers")

    _check_digest(lowered["digest"], body)

    request_id = lowered["x-request-id"].strip()
    problem = text_problem(request_id, MAX_REQUEST_ID_LENGTH)
    if problem is not None:
        raise WebhookMalformed(f"X-Request-ID {problem}")

    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    sent_at = _parse_http_date(lowered["date"])
    skew = abs((now - sent_at).total_seconds())
    if skew > tolerance_seconds:
        raise WebhookRejected("Date is outside the accepted window")

    content_type = lowered.get("content-type")
    payload = _parse_body(content_type, body)
    session_id = payload.get("session_id")
    event = payload.get("event")
    return WebhookHint(
        delivery_id=request_id,
        provider_session_id=session_id if isinstance(session_id, str) and session_id else None,
        event_type=event if isinstance(event, str) and event else None,
        content_type=content_type,
        payload=payload,
    )
