"""Fintecture's two signature schemes, from the simulator's side.

- Requests from the merchant (contract §2): cavage-style HTTP signature, RSASSA-PKCS1-v1_5/SHA-256
  with the merchant's private key; we verify with the registered public key.
- Webhooks to the merchant (contract §3): the "signature" is the signing string ENCRYPTED with the
  merchant's public key (RSA-OAEP, SHA-1, MGF1-SHA-1, no label); the merchant decrypts it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

_PARAM = re.compile(r'([A-Za-z]+)\s*=\s*"([^"]*)"')


class SignatureError(Exception):
    """The request's signing headers are missing or wrong; the message says which."""


@dataclass(frozen=True)
class SignatureCheck:
    signed: bool  # a Signature header was present
    verified: bool  # ... and it verified


def body_digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def parse_signature_header(value: str) -> dict[str, str]:
    """`keyId="…",algorithm="…",headers="…",signature="…"`, with or without spaces after commas."""
    return {name: param for name, param in _PARAM.findall(value)}


def _digest_matches(header: str, body: bytes) -> bool:
    algorithm, _, value = header.partition("=")
    return algorithm.strip().upper() == "SHA-256" and value.strip() == body_digest(body).partition("=")[2]


def parse_http_date(value: str) -> datetime:
    """Every RFC 2822 spelling the SDKs send: `GMT`, `+0000`, `-0000`, or a local offset."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise SignatureError(f"Date header is not an RFC 2822 date: {value!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


_ENCODED_BRACKET = re.compile(r"%5[BbDd]")


def request_targets(method: str, raw_path: str, query: str) -> list[str]:
    """The `(request-target)` values a signature may have been made over: the method, path and
    query exactly as received, and, when the query has square brackets, the same with them spelled
    the other way (literal `[` `]` or `%5B` `%5D`).

    Fintecture serves its official Python SDK, which signs `filter[status]=…` but whose HTTP client
    sends `filter%5Bstatus%5D=…`. That is the one normalisation: anything else percent-encoded (a
    `state`, a `redirect_uri`) must be signed exactly as it is sent.
    """
    exact = f"{method.lower()} {raw_path}" + (f"?{query}" if query else "")
    targets = [exact]
    literal = _ENCODED_BRACKET.sub(lambda m: "[" if m.group(0)[-1] in "Bb" else "]", query)
    encoded = query.replace("[", "%5B").replace("]", "%5D")
    for spelling in (literal, encoded):
        target = f"{method.lower()} {raw_path}?{spelling}"
        if spelling != query and target not in targets:
            targets.append(target)
    return targets


def verify_request(
    *,
    app_id: str,
    public_key: RSAPublicKey,
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    required: bool,
    now: datetime,
    date_tolerance: float | None = None,
) -> SignatureCheck:
    """Check a merchant request per contract §2.

    `raw_path` and `query` are exactly as on the wire (not decoded), except that square brackets in
    the query may have been signed in their other spelling (`request_targets`); `headers` must look
    up names case-insensitively. With `required` (strict mode) the signing headers must all be present;
    otherwise they are checked only when present. A Digest on a body-less request (the Ruby SDK
    sends one on GET) is accepted without comparing it to the empty body.
    """
    has_body = len(body) > 0
    digest = headers.get("digest")
    if has_body and digest is not None and not _digest_matches(digest, body):
        raise SignatureError("Digest does not match SHA-256 of the request body")
    signature_header = headers.get("signature")
    if signature_header is None:
        if required:
            wanted = ["signature", "date", "x-request-id"] + (["digest"] if has_body else [])
            missing = [name for name in wanted if headers.get(name) is None]
            raise SignatureError("missing signing headers: " + ", ".join(missing))
        return SignatureCheck(signed=False, verified=False)

    params = parse_signature_header(signature_header)
    for name in ("keyId", "headers", "signature"):
        if name not in params:
            raise SignatureError(f"Signature header has no {name}")
    if params["keyId"] != app_id:
        raise SignatureError("Signature keyId is not the application's app_id")
    if params.get("algorithm", "rsa-sha256").lower() != "rsa-sha256":
        raise SignatureError("Signature algorithm must be rsa-sha256")

    covered = params["headers"].lower().split()
    needed = ["(request-target)", "date", "x-request-id"] + (["digest"] if has_body else [])
    uncovered = [name for name in needed if name not in covered]
    if uncovered:
        raise SignatureError("Signature must cover: " + ", ".join(uncovered))

    # One signing string per accepted spelling of (request-target); they differ in that line only.
    signing_strings = []
    for target in request_targets(method, raw_path, query):
        lines = []
        for name in covered:
            value = target if name == "(request-target)" else headers.get(name)
            if value is None:
                raise SignatureError(f"signed header {name} is missing from the request")
            lines.append(f"{name}: {value}")
        signing_strings.append("\n".join(lines).encode())

    sent_at = parse_http_date(headers["date"])
    if date_tolerance is not None and abs((now - sent_at).total_seconds()) > date_tolerance:
        raise SignatureError("Date is outside the accepted window")
    if required and not _is_uuid(headers["x-request-id"]):
        raise SignatureError("X-Request-ID must be a UUID")

    try:
        raw_signature = base64.b64decode(params["signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("signature is not base64") from exc
    for signing_string in signing_strings:
        try:
            public_key.verify(raw_signature, signing_string, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return SignatureCheck(signed=True, verified=True)
    raise SignatureError("signature does not verify with the application's public key")


def webhook_headers(
    *, app_id: str, public_key: RSAPublicKey, body: bytes, date: str, request_id: str
) -> dict[str, str]:
    """Signing headers of one webhook attempt (contract §3)."""
    digest = body_digest(body)
    plaintext = f"date: {date}\ndigest: {digest}\nx-request-id: {request_id}".encode()
    sha1 = hashes.SHA1()  # noqa: S303 - the provider's scheme is OAEP with SHA-1, not our choice
    ciphertext = public_key.encrypt(
        plaintext, padding.OAEP(mgf=padding.MGF1(algorithm=sha1), algorithm=sha1, label=None)
    )
    signature = base64.b64encode(ciphertext).decode()
    return {
        "Date": date,
        "Digest": digest,
        "X-Request-ID": request_id,
        "Signature": (
            f'keyId="{app_id}",algorithm="rsa-sha256",headers="date digest x-request-id",'
            f'signature="{signature}"'
        ),
    }
