"""Fintecture webhooks built in tests straight from the contract (§3), with `cryptography` only,
so the service is checked against the documented scheme rather than against its own helpers."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from email.utils import format_datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key


def oaep_sha1() -> padding.OAEP:
    sha1 = hashes.SHA1()  # noqa: S303 - the provider's scheme
    return padding.OAEP(mgf=padding.MGF1(algorithm=sha1), algorithm=sha1, label=None)


def public_key_from_pem(pem: str | bytes) -> rsa.RSAPublicKey:
    key = load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def build_delivery(
    public_key: rsa.RSAPublicKey,
    body: bytes,
    *,
    date: datetime,
    request_id: str,
    key_id: str,
    content_type: str = "application/x-www-form-urlencoded",
    signed_names: tuple[str, ...] = ("date", "digest", "x-request-id"),
    oaep: padding.OAEP | None = None,
) -> dict[str, str]:
    """Headers as the provider sends them: the listed headers' lines, OAEP-encrypted, base64."""
    headers = {
        "Date": format_datetime(date, usegmt=True),
        "Digest": "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode(),
        "X-Request-ID": request_id,
        "Content-Type": content_type,
    }
    by_name = {name.lower(): value for name, value in headers.items()}
    plaintext = "\n".join(f"{name}: {by_name[name]}" for name in signed_names).encode()
    ciphertext = public_key.encrypt(plaintext, oaep or oaep_sha1())
    headers["Signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(signed_names)}",'
        f'signature="{base64.b64encode(ciphertext).decode()}"'
    )
    return headers
