"""What the API document says of Powens Pay's returns and webhooks (contracts/powens.md §3, §5)."""

from __future__ import annotations

from app.providers.base import ReturnParameter, WebhookDocs

RETURN_PARAMETERS = (
    ReturnParameter("id_payment", "Powens's payment id; must be the one stored for `state`", "4217"),
    ReturnParameter("error", "`cancelled` when the payer gave up; a hint only", "cancelled"),
    ReturnParameter("error_code", "Powens's reason for a failure; a hint only", "insufficientFunds"),
    ReturnParameter("payment_state", "Powens's view of the payment when the payer left; ignored", "done"),
)

WEBHOOK = WebhookDocs(
    scheme="PowensSignature",
    header="BI-Signature",
    description=(
        "Powens's `PAYMENT_STATE_UPDATED` webhook (contracts/powens.md §5). `BI-Signature` is the "
        "standard base64 of HMAC-SHA256, keyed with the webhook secret shared with Powens, over "
        "`METHOD.path.BI-Signature-Date.body` (the request path without its query, the raw body, "
        "decompressed first when sent with `Content-Encoding: gzip`). `BI-Signature-Date` (UTC ISO "
        "8601) must be within POWENS_WEBHOOK_TOLERANCE_SECONDS (600 by default) of now, either way; "
        "`id_webhook_data` identifies the delivery (deduplicated). The payment's status is still read "
        "from Powens's API."
    ),
    media_type="application/json",
    example={
        "id": 4217,
        "state": "done",
        "state_detail": None,
        "error_code": None,
        "client_state": "st_kq3x9Zc1wL5v",
        "instructions": [
            {
                "id": 5310,
                "label": "ORD-7K3F9Q2M",
                "amount": 118.0,
                "currency": {"id": "EUR", "precision": 2},
                "reference_id": "ORD-7K3F9Q2M",
                "state": "done",
            }
        ],
        "id_webhook_data": 90211,
    },
)
