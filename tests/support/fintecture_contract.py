"""Fintecture's documented statuses (contracts/fintecture.md §6), written out once for the tests,
independently of both the service's status table and the simulator."""

SESSION_STATUSES = (
    "session_initiated",
    "provider_required",
    "sca_required",
    "payment_waiting",
    "payment_pending",
    "payment_created",
    "payment_unsuccessful",
    "payment_cancelled",
    "payment_expired",
    "payment_partial",
    "payment_error",
    "payment_unknown",
    "order_created",
    "iban_required",
    "iban_received",
)

TRANSFER_STATES = (
    "completed",
    "sent",
    "processing",
    "pending",
    "authorized",
    "accepted",
    "received",
    "overpaid",
    "insufficient",
    "rejected",
    "initiated",
    "blocked",
    "cancelled",
    "multi-signature",
)
