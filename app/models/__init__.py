"""All tables; importing this module registers them on `Base.metadata`."""

from app.models.base import Base
from app.models.catalog import Product
from app.models.orders import IdempotencyKey, Order, OrderLine, OrderTransition, TransitionSource
from app.models.payments import InboxOutcome, PaymentSession, ProviderEvent, Refund
from app.models.payouts import Payout, PayoutTransition

__all__ = [
    "Base",
    "IdempotencyKey",
    "InboxOutcome",
    "Order",
    "OrderLine",
    "OrderTransition",
    "PaymentSession",
    "Payout",
    "PayoutTransition",
    "Product",
    "ProviderEvent",
    "Refund",
    "TransitionSource",
]
