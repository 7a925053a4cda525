"""Application factory: settings in, a ready FastAPI app out."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import docs_pages, health, logging_setup, metrics, openapi
from app.admin.routes import build_router as admin_router
from app.catalog.routes import router as catalog_router
from app.config import Settings
from app.db import create_engine, create_sessionmaker, fill_pool
from app.edge import EdgeMiddleware
from app.errors import install_error_handlers
from app.events.dispatcher import OutboxDispatcher
from app.events.routes import router as events_router
from app.orders.create_route import OrderCreateRoute
from app.orders.routes import router as orders_router
from app.payments.routes import router as payments_router
from app.payments.session_route import PaymentSessionRoute
from app.payments.webhooks import WebhookRoute
from app.payments.workers import PaymentWorkers
from app.payouts.routes import router as payouts_router
from app.providers import registry
from app.providers.base import ProviderSettings
from app.providers.http import provider_http_client
from app.ratelimit import RateLimiter
from app.storefront.routes import router as storefront_router

log = logging_setup.get_logger(__name__)

API_DESCRIPTION = """
Pay-by-bank checkout: create orders from the catalog, open open-banking payment sessions,
and let callbacks, signed webhooks and a sweeper drive every order to its final state exactly once.

Errors always look like `{"error": {"code": "...", "message": "...", "details": [...]}}`.
"""


def create_app(
    settings: Settings | None = None, provider_settings: Sequence[ProviderSettings] = ()
) -> FastAPI:
    """`provider_settings` supplies a provider's settings instead of reading them from the
    environment (each provider reads its own, under its own prefix)."""
    settings = settings or Settings()
    providers_config = registry.load_provider_settings(provider_settings)
    registry.check(settings, providers_config)
    logging_setup.configure(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            pool_timeout=settings.database_pool_timeout_seconds,
            connect_timeout=settings.database_connect_timeout_seconds,
        )
        sessionmaker = create_sessionmaker(engine)
        if settings.database_pool_prefill:
            opened = await fill_pool(engine, settings.database_pool_size)
            if opened < settings.database_pool_size:
                log.warning("database_pool_not_filled", opened=opened, pool_size=settings.database_pool_size)
        http = provider_http_client(settings.provider_timeout_seconds)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker
        app.state.http = http
        app.state.providers = registry.build_providers(settings, providers_config, http)
        workers = PaymentWorkers(settings, sessionmaker, app.state.providers)
        app.state.workers = workers
        dispatcher = OutboxDispatcher.from_settings(settings, sessionmaker)
        app.state.dispatcher = dispatcher
        if settings.workers_enabled:
            workers.start()
            dispatcher.start()  # only when MERCHANT_WEBHOOK_URLS names an endpoint
        # Everything built at start-up lives as long as the process: keep it out of the garbage
        # collector's generations, so each collection walks only what requests allocate.
        gc.collect()
        gc.freeze()
        # A request allocates thousands of short-lived objects: collect the young generation every
        # 50,000 net allocations rather than 700, which cost about a fifth of the CPU under load.
        gc.set_threshold(50_000, 20, 20)
        try:
            yield
        finally:
            await workers.stop()
            await dispatcher.stop()
            await http.aclose()
            await engine.dispose()
            metrics.process_stopped()

    app = FastAPI(
        title="Pay-by-bank checkout",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # Served by docs_pages, each page with its own Content-Security-Policy.
        docs_url=None,
        redoc_url=None,
        # Metrics are Prometheus's (app/metrics.py): FastAPI's OpenTelemetry hooks would only
        # look, on every request, for a provider nobody configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter.from_settings(settings)
    install_error_handlers(app)
    # A plain POST /orders is answered here, inside CORS (so added before it) and before FastAPI's
    # routing (app/orders/create_route.py): it is the storefront's busiest request.
    app.add_middleware(OrderCreateRoute)
    # Likewise a plain payment-session opening (app/payments/session_route.py), from the same pages.
    app.add_middleware(PaymentSessionRoute)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Idempotent-Replayed"],
        )
    # Webhook deliveries to an enabled provider are answered here, inside the edge and before
    # FastAPI's routing (app/payments/webhooks.py): they are the busiest requests.
    app.add_middleware(WebhookRoute)
    # Outermost (added last): the body limit, the error shape, the security headers, the request id
    # and access line, and the request metrics, for every answer, a CORS refusal included.
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)

    openapi.install(app)
    # A request is matched against the routes in this order: the hot paths (webhooks, orders,
    # payment sessions) come first. Their paths overlap no other router's, so order is free.
    routers = [
        payments_router,
        orders_router,
        health.router,
        docs_pages.router(app.openapi_url or "/openapi.json", app.title),
        catalog_router,
        payouts_router,
        events_router,
        admin_router(settings),  # the operator console, /admin
        metrics.router,
    ]
    if settings.demo_storefront:
        routers.append(storefront_router)
    for router in routers:
        add_routes(app, router)
    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put `router`'s routes in the app's own list, as they are. `include_router` keeps each router
    as a nested branch, and a request is then matched twice against every route of its branch (to
    find the branch, then inside it) and against every branch before it: about 20 µs a request
    here. Routes come out of their router complete (its tags, dependencies and schema visibility
    are applied when a route is added), and none of ours is included with a prefix or options."""
    app.router.routes.extend(router.routes)
