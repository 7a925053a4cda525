"""All tables; importing this module registers them on `Base.metadata`."""

from app.models.base import Base
from app.models.catalog import Product
from app.models.orders import IdempotencyKey, Order, OrderLine, OrderTransition, TransitionSource
from app.models.payments import InboxOutcome, PaymentSession, ProviderEvent, Refund

__all__ = [
    "Base",
    "IdempotencyKey",
    "InboxOutcome",
    "Order",
    "OrderLine",
    "OrderTransition",
    "PaymentSession",
    "Product",
    "ProviderEvent",
    "Refund",
    "TransitionSource",
]
