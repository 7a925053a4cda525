"""Fintecture's signature schemes written from the contract (contracts/fintecture.md §2 and §3),
independently of the simulator's code, so the tests check the simulator against the contract.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import parse_qsl

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


def digest_of(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def rfc2822(moment: datetime, style: str = "gmt") -> str:
    """The Date spellings the SDKs send (§2.3): NODE/RB `GMT`, PY `+0000`, PY13 `-0000`, PHP local."""
    moment = moment.astimezone(UTC)
    if style == "gmt":
        return format_datetime(moment, usegmt=True)
    if style == "plus":
        return moment.strftime("%a, %d %b %Y %H:%M:%S +0000")
    if style == "minus":
        return moment.strftime("%a, %d %b %Y %H:%M:%S -0000")
    if style == "paris":  # the same instant written with a +0200 offset
        return moment.astimezone(timezone(timedelta(hours=2))).strftime("%a, %d %b %Y %H:%M:%S +0200")
    raise ValueError(style)


def sign_request(
    request: httpx.Request,
    *,
    key_id: str,
    private_key: RSAPrivateKey,
    date: str,
    request_id: str | None = None,
    digest_header: str | None = None,
) -> None:
    """Add Date, Digest (body only), X-Request-ID and Signature to `request`, per §2 steps 1-8."""
    body = request.content
    request.headers["Date"] = date
    request.headers["X-Request-ID"] = request_id or str(uuid.uuid4())
    names = ["(request-target)", "date"]
    if body or digest_header:
        request.headers["Digest"] = digest_header or digest_of(body)
        names.append("digest")
    names.append("x-request-id")
    # (request-target): lowercase method, space, path and query exactly as they go on the wire.
    target = f"{request.method.lower()} {request.url.raw_path.decode('ascii')}"
    lines = []
    for name in names:
        value = target if name == "(request-target)" else request.headers[name]
        lines.append(f"{name}: {value}")
    signature = private_key.sign("\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256())
    request.headers["Signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(names)}",'
        f'signature="{base64.b64encode(signature).decode()}"'
    )


@dataclass(frozen=True)
class VerifiedWebhook:
    fields: dict[str, str]
    date: datetime
    request_id: str


class WebhookRejected(AssertionError):
    pass


def verify_webhook(
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    app_id: str,
    private_key: RSAPrivateKey,
    now: datetime,
    tolerance: float = 300,
) -> VerifiedWebhook:
    """The merchant's side of §3, as the contract recommends: decrypt, compare every line."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', headers["signature"]))
    if params.get("keyId") != app_id:
        raise WebhookRejected("keyId is not our app_id")
    if params.get("headers") != "date digest x-request-id":
        raise WebhookRejected(f"unexpected signed headers {params.get('headers')!r}")
    sha1 = hashes.SHA1()  # noqa: S303 - the provider's scheme is OAEP with SHA-1
    plaintext = private_key.decrypt(
        base64.b64decode(params["signature"]),
        padding.OAEP(mgf=padding.MGF1(algorithm=sha1), algorithm=sha1, label=None),
    ).decode()
    expected = (
        f"date: {headers['date']}\ndigest: {headers['digest']}\nx-request-id: {headers['x-request-id']}"
    )
    if plaintext != expected:
        raise WebhookRejected(f"decrypted signing string {plaintext!r} != headers {expected!r}")
    if headers["digest"] != digest_of(raw_body):
        raise WebhookRejected("Digest is not SHA-256 of the raw body")
    sent_at = parsedate_to_datetime(headers["date"])
    if abs((now - sent_at).total_seconds()) > tolerance:
        raise WebhookRejected("Date outside the window")
    return VerifiedWebhook(
        fields=dict(parse_qsl(raw_body.decode(), keep_blank_values=True)),
        date=sent_at,
        request_id=headers["x-request-id"],
    )
