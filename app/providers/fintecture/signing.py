"""Fintecture cryptography: key pairs, outgoing request signatures, incoming webhook signatures.

Requests (contracts/fintecture.md §2) are signed cavage-style with RSASSA-PKCS1-v1_5/SHA-256 over
`(request-target)`, `date`, `digest` (only with a body) and `x-request-id`. Webhooks (§3) carry the
same kind of header list, but their "signature" is the plaintext *encrypted* with the merchant's
public key (RSA-OAEP, SHA-1, MGF1-SHA-1): verifying one means decrypting it with the private key.

Everything here is pure (no I/O, no clock): callers pass the date and the request id.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNATURE_ALGORITHM = "rsa-sha256"
# The header list the provider uses for webhooks; it documents that the list may change.
WEBHOOK_SIGNED_HEADERS: tuple[str, ...] = ("date", "digest", "x-request-id")


# --- Keys ---------------------------------------------------------------------------------------


def generate_key_pair_pem(bits: int = 2048) -> tuple[bytes, bytes]:
    """A new RSA key pair: (private key PEM PKCS#8, public key PEM SubjectPublicKeyInfo)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """Parse an unencrypted RSA private key (PKCS#8 or PKCS#1 PEM). Costly: call once per process."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # The exception text never contains key material, but keep the message generic anyway.
        raise ValueError("the Fintecture private key is not a readable unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the Fintecture private key must be an RSA key")
    if key.key_size < 2048:
        raise ValueError("the Fintecture private key must be at least 2048 bits")
    return key


# --- Outgoing requests (§2) ---------------------------------------------------------------------


def body_digest(body: bytes) -> str:
    """`SHA-256=` + base64(sha256(body)), the Digest header value."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def http_date(moment: datetime) -> str:
    """RFC 2822 date in GMT, e.g. `Sat, 21 Nov 2026 04:58:45 GMT`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def signing_string(fields: Sequence[tuple[str, str]]) -> str:
    """`name: value` lines, lowercase names, joined by newlines, no trailing newline."""
    return "\n".join(f"{name.lower()}: {value}" for name, value in fields)


def sign_request(
    private_key: rsa.RSAPrivateKey,
    key_id: str,
    *,
    method: str,
    target: str,
    body: bytes | None,
    date: str,
    request_id: str,
) -> dict[str, str]:
    """The headers that sign one request: Date, Digest (only with a body), X-Request-ID, Signature.

    `target` is the path plus `?query` exactly as it goes on the wire (already percent-encoded).
    """
    headers = {"Date": date}
    fields: list[tuple[str, str]] = [("(request-target)", f"{method.lower()} {target}"), ("date", date)]
    if body:
        headers["Digest"] = body_digest(body)
        fields.append(("digest", headers["Digest"]))
    headers["X-Request-ID"] = request_id
    fields.append(("x-request-id", request_id))
    signature = private_key.sign(signing_string(fields).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    headers["Signature"] = (
        f'keyId="{key_id}",algorithm="{SIGNATURE_ALGORITHM}",'
        f'headers="{" ".join(name for name, _ in fields)}",'
        f'signature="{base64.b64encode(signature).decode("ascii")}"'
    )
    return headers


# --- Incoming webhooks (§3) ---------------------------------------------------------------------

# One `name=value` parameter; the value quoted (no escapes inside, as the provider never emits
# them) or a bare token. Separators between parameters: a comma and optional spaces.
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"([^"]*)"|([^\s,"]*))\s*(?:,|$)')


class SignatureHeaderError(ValueError):
    """The Signature header cannot be parsed; the message is safe to log."""


def parse_signature_header(value: str) -> dict[str, str]:
    """`keyId="…",algorithm="…",headers="…",signature="…"` in any order, with or without spaces.

    Parameter names are case-insensitive (returned lowercased); a repeated name is an error.
    """
    params: dict[str, str] = {}
    pos = 0
    value = value.strip()
    if not value:
        raise SignatureHeaderError("empty Signature header")
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if match is None or match.end() == pos:
            raise SignatureHeaderError("malformed Signature header")
        name = match.group(1).lower()
        if name in params:
            raise SignatureHeaderError(f"repeated Signature parameter {name}")
        params[name] = match.group(2) if match.group(2) is not None else match.group(3)
        pos = match.end()
    return params


# The provider's choice (contracts/fintecture.md §3), not ours: SHA-1 here is OAEP's hash and mask.
_WEBHOOK_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303


def decrypt_webhook_signature(private_key: rsa.RSAPrivateKey, signature_b64: str) -> bytes:
    """Decrypt the webhook's `signature` parameter (RSA-OAEP SHA-1/MGF1-SHA-1, empty label).

    Raises ValueError when it is not base64 of one RSA block or does not decrypt with this key.
    """
    try:
        ciphertext = base64.b64decode(signature_b64, validate=True)
    except ValueError as exc:
        raise ValueError("signature is not base64") from exc
    if len(ciphertext) != (private_key.key_size + 7) // 8:
        raise ValueError("signature has the wrong length for the merchant key")
    try:
        return private_key.decrypt(ciphertext, _WEBHOOK_OAEP)
    except ValueError as exc:
        raise ValueError("signature does not decrypt with the merchant key") from exc


def webhook_plaintext(names: Sequence[str], headers: Mapping[str, str]) -> str:
    """The plaintext the provider encrypts: the listed headers, in the listed order.

    `headers` must have lowercase keys.
    """
    return signing_string([(name, headers[name]) for name in names])
