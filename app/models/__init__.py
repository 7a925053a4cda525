"""All tables; importing this module registers them on `Base.metadata`."""

from app.models.base import Base
from app.models.catalog import Product
from app.models.orders import IdempotencyKey, Order, OrderLine, OrderTransition
from app.models.payments import PaymentSession, ProviderEvent

__all__ = [
    "Base",
    "IdempotencyKey",
    "Order",
    "OrderLine",
    "OrderTransition",
    "PaymentSession",
    "Product",
    "ProviderEvent",
]
