"""All tables; importing this module registers them on `Base.metadata`."""

from app.models.base import Base
from app.models.catalog import Product
from app.models.events import DeliveryStatus, OutboundDelivery, OutboundDeliveryAttempt, OutboundEvent
from app.models.orders import IdempotencyKey, Order, OrderLine, OrderTransition, TransitionSource
from app.models.payments import InboxOutcome, PaymentSession, ProviderEvent, Refund
from app.models.payouts import Payout, PayoutTransition

__all__ = [
    "Base",
    "DeliveryStatus",
    "IdempotencyKey",
    "InboxOutcome",
    "Order",
    "OrderLine",
    "OrderTransition",
    "OutboundDelivery",
    "OutboundDeliveryAttempt",
    "OutboundEvent",
    "PaymentSession",
    "Payout",
    "PayoutTransition",
    "Product",
    "ProviderEvent",
    "Refund",
    "TransitionSource",
]
