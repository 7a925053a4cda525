"""What the API document says of Fintecture's returns and webhooks (contracts/fintecture.md §3, §7)."""

from __future__ import annotations

from app.providers.base import ReturnParameter, WebhookDocs

RETURN_PARAMETERS = (
    ReturnParameter(
        "session_id",
        "Fintecture's payment (or payout) session id; must be the one stored for `state`",
        "b2bca2bcd3b64a32a7da0766df59a7d2",
    ),
    ReturnParameter(
        "status", "Fintecture's view of the session when the payer left; ignored", "payment_created"
    ),
    ReturnParameter("provider", "The payer's bank at Fintecture; ignored", "cmcifrpp"),
    ReturnParameter("customer_id", "Fintecture's id of the payer; ignored", "1ef74e9a4b2c4d1c8e0f"),
)

WEBHOOK = WebhookDocs(
    scheme="FintectureSignature",
    header="Signature",
    description=(
        "Fintecture's webhook scheme (contracts/fintecture.md §3). The `Signature` header reads "
        '`keyId="<app id>",algorithm="rsa-sha256",headers="date digest x-request-id",'
        'signature="<base64>"`: the `Date`, `Digest` and `X-Request-ID` headers, encrypted with the '
        "merchant's RSA public key (OAEP, SHA-1). The service decrypts it with its private key and "
        "requires the decrypted headers to equal the ones received, `Digest` to be `SHA-256=` of the "
        "raw body, `Date` within FINTECTURE_WEBHOOK_TOLERANCE_SECONDS (300 by default) of now, either "
        "way, and `X-Request-ID` (the delivery id, deduplicated). Since it is encryption with a public "
        "key, it proves freshness and integrity rather than origin: the body is only a hint, and the "
        "payment's status is always read from Fintecture's API."
    ),
    media_type="application/x-www-form-urlencoded",
    example={
        "session_id": "b2bca2bcd3b64a32a7da0766df59a7d2",
        "status": "payment_created",
        "customer_id": "1ef74e9a4b2c4d1c8e0f",
        "provider": "cmcifrpp",
        "state": "st_kq3x9Zc1wL5v",
        "type": "PayByBank",
        "transfer_state": "completed",
        "amount": "118.00",
        "currency": "EUR",
        "event": "payment_session.status.payment_created",
    },
)
