"""Prometheus metrics: what the service counts, and `GET /metrics`, which shows it.

Counted where it happens (each family is described in README, "Metrics"):

- every HTTP answer, by method, route template and status, with its latency (`RequestRecorder`,
  called by the edge middleware: a dict look-up and two increments per request);
- order transitions, by provider, from-state, to-state and source, once their transaction has
  committed (`transition_recorded`, called by the writer);
- every HTTP exchange with a provider, by provider, operation and outcome, with its latency
  (`provider_call`, called by the shared provider transport for each attempt);
- webhook deliveries by provider and verdict (`webhook_received`, called by the webhook route);
- the sweeper's claims and errors (`sweep_finished`).

Read from the database when scraped (`database_gauges`): the inbox's depth and the age of its oldest
unprocessed event, and the orders in `needs_review`. One short query with a statement timeout,
run by the process answering the scrape, in a registry of its own.

Several processes (`checkout serve --workers N`): prometheus_client's multiprocess mode. The serve
command calls `prepare_multiprocess_dir` in the parent before the workers start; each worker then
keeps its counters in its own files in that directory, and whichever worker answers a scrape sums
the files of every process, past and present. The database gauges are never in those files, so they
are counted once, not once per process. With one process and no directory, the plain in-memory
registry serves.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction
from starlette.types import Scope

from app.errors import NotFound
from app.logging_setup import get_logger
from app.models import Order, ProviderEvent
from app.orders.states import OrderStatus

log = get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):
    # An unlabelled counter opens its file as it is built, below: a directory named but not made
    # yet (the serve command's parent imports this before it prepares the directory) must not
    # stop the process.
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)

# Counters and histograms of this process; in multiprocess mode their values live in the shared
# directory's files instead, and a scrape reads those.
REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds. Requests: sub-millisecond answers up to a slow provider behind a callback.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Provider calls: tens of milliseconds up to the 10 s timeout.
_PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "checkout_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_REQUEST_DURATION = Histogram(
    "checkout_http_request_duration_seconds",
    "Time from a request's arrival to the last byte of its answer, by method and route template",
    ["method", "route"],
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
PAYMENT_TRANSITIONS = Counter(
    "checkout_payment_transitions",
    "Order transitions committed by the payment writer, by provider, from-state, to-state and source",
    ["provider", "from_state", "to_state", "source"],
    registry=REGISTRY,
)
PROVIDER_REQUESTS = Counter(
    "checkout_provider_requests",
    "HTTP exchanges with a provider (each retry counts), by provider, operation and outcome",
    ["provider", "operation", "outcome"],
    registry=REGISTRY,
)
PROVIDER_REQUEST_DURATION = Histogram(
    "checkout_provider_request_duration_seconds",
    "Duration of one HTTP exchange with a provider, by provider and operation",
    ["provider", "operation"],
    buckets=_PROVIDER_BUCKETS,
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "checkout_webhooks",
    "Webhook deliveries by provider and verdict (accepted, duplicate, rejected with its error code)",
    ["provider", "verdict", "reason"],
    registry=REGISTRY,
)
SWEEPER_CLAIMS = Counter(
    "checkout_sweeper_claims",
    "What the sweeper claimed to ask its provider about: payment sessions, refunds, payouts",
    ["kind"],
    registry=REGISTRY,
)
SWEEPER_ERRORS = Counter(
    "checkout_sweeper_errors",
    "Claimed sessions, refunds or payouts whose sweep failed (provider error or otherwise)",
    registry=REGISTRY,
)


# --- several processes ---------------------------------------------------------------------------


def prepare_multiprocess_dir(
    path: str | os.PathLike[str] | None = None, environ: MutableMapping[str, str] | None = None
) -> Path:
    """Make the directory worker processes share their counters through, and name it in `environ`
    (os.environ by default) as PROMETHEUS_MULTIPROC_DIR, so processes started afterwards inherit it.

    Call it in the parent before any worker starts. The directory is `path`, else the one
    PROMETHEUS_MULTIPROC_DIR already names, else a new temporary one; the counter files of an
    earlier run (`*.db`) are removed, so counts start from zero with the server, as a process's do.
    """
    environ = os.environ if environ is None else environ
    chosen = path or environ.get(MULTIPROC_ENV)
    directory = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="checkout-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    environ[MULTIPROC_ENV] = str(directory)
    return directory


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_stopped() -> None:
    """A worker shutting down: its live gauges leave the shared directory (its counters stay summed)."""
    directory = multiprocess_dir()
    if directory:
        prometheus_multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


# --- HTTP requests --------------------------------------------------------------------------------

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


class RequestRecorder:
    """Counts every HTTP answer by method, route template (`/orders/{order_id}`, never the raw path;
    anything no route matched is `unmatched`) and status, and observes its latency up to the last
    body byte (background tasks run after it are not the client's wait). The edge middleware
    (app/edge.py) calls it for every answer, the ones it makes itself (413, 500) included."""

    def __init__(self) -> None:
        # Label children per (method, route, status): the label look-up is the costly part.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED_ROUTE
        method = scope["method"]
        if method not in _METHODS:
            method = "other"  # any token is a method to the server: keep the label set bounded
        key = (method, template, status)
        children = self._children.get(key)
        if children is None:
            children = (
                HTTP_REQUESTS.labels(method, template, str(status)),
                HTTP_REQUEST_DURATION.labels(method, template),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)


# --- payment transitions --------------------------------------------------------------------------

_PENDING_TRANSITIONS = "checkout.metrics.transitions"


def transition_recorded(
    db: AsyncSession, *, provider: str | None, from_state: str, to_state: str, source: str
) -> None:
    """The writer moved an order in `db`'s transaction: counted when that transaction commits,
    forgotten if it rolls back."""
    pending = db.info.setdefault(_PENDING_TRANSITIONS, [])
    pending.append((provider or "none", from_state, to_state, source))


def transition_committed(*, provider: str | None, from_state: str, to_state: str, source: str) -> None:
    """A writer's own statement moved an order, and its transaction has committed."""
    PAYMENT_TRANSITIONS.labels(provider or "none", from_state, to_state, source).inc()


@event.listens_for(Session, "after_commit")
def _count_committed_transitions(session: Session) -> None:
    pending = session.info.pop(_PENDING_TRANSITIONS, None)
    if pending:
        for labels in pending:
            PAYMENT_TRANSITIONS.labels(*labels).inc()


@event.listens_for(Session, "after_transaction_end")
def _forget_uncommitted_transitions(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the list is gone already; after a rollback of the whole transaction, nothing
    # it recorded happened.
    if transaction.parent is None:
        session.info.pop(_PENDING_TRANSITIONS, None)


# --- provider calls -------------------------------------------------------------------------------

# "v2", "2.0": a version in the path, not an identifier.
_VERSION_SEGMENT = re.compile(r"v\d+|\d+\.\d+")


def provider_operation(method: str, path: str) -> str:
    """`GET /pis/v2/payments/{id}`: the call without its identifiers, so the label set stays bounded."""
    segments = []
    for segment in path.split("/"):
        if len(segment) > 32 or (
            any(c.isdigit() for c in segment) and not _VERSION_SEGMENT.fullmatch(segment)
        ):
            segment = "{id}"
        segments.append(segment)
    return f"{method} {'/'.join(segments)}"


def provider_outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return "http_4xx" if status < 500 else "http_5xx"


def provider_call(provider: str, method: str, path: str, outcome: str, elapsed: float) -> None:
    """One HTTP exchange with a provider: `outcome` is ok, http_4xx, http_5xx, network_error or
    cancelled (the caller stopped waiting)."""
    operation = provider_operation(method, path)
    PROVIDER_REQUESTS.labels(provider, operation, outcome).inc()
    PROVIDER_REQUEST_DURATION.labels(provider, operation).observe(elapsed)


# --- webhooks and the sweeper ---------------------------------------------------------------------


# Label children per (provider, verdict, reason), as RequestRecorder keeps its own: one look-up per
# delivery instead of prometheus_client's label validation.
_webhook_children: dict[tuple[str, str, str], Any] = {}


def webhook_received(provider: str, verdict: str, reason: str = "") -> None:
    """A delivery's verdict: `accepted` (stored), `duplicate` (stored before), or `rejected` with the
    error code it was answered with (`invalid_signature`, `invalid_webhook`)."""
    key = (provider, verdict, reason)
    child = _webhook_children.get(key)
    if child is None:
        child = _webhook_children[key] = WEBHOOKS.labels(provider, verdict, reason)
    child.inc()


def sweep_finished(*, sessions: int, refunds: int, payouts: int, errors: int) -> None:
    SWEEPER_CLAIMS.labels("payment_session").inc(sessions)
    SWEEPER_CLAIMS.labels("refund").inc(refunds)
    SWEEPER_CLAIMS.labels("payout").inc(payouts)
    SWEEPER_ERRORS.inc(errors)


# --- read from the database at scrape time --------------------------------------------------------

# A scrape waits this long for the database, then answers without its gauges.
DATABASE_GAUGES_TIMEOUT_SECONDS = 2.0


def _database_gauges_query() -> Any:
    unprocessed = ProviderEvent.processed_at.is_(None)
    return select(
        select(func.count()).select_from(ProviderEvent).where(unprocessed).scalar_subquery(),
        select(func.extract("epoch", func.now() - func.min(ProviderEvent.received_at)))
        .where(unprocessed)
        .scalar_subquery(),
        select(func.count())
        .select_from(Order)
        .where(Order.status == OrderStatus.NEEDS_REVIEW)
        .scalar_subquery(),
    )


async def _read_gauges(
    sessionmaker: async_sessionmaker[AsyncSession], statement_timeout_ms: int
) -> list[GaugeMetricFamily]:
    async with sessionmaker() as db, db.begin():
        # The server gives up too, so an abandoned scrape leaves no query running.
        await db.execute(text(f"SET LOCAL statement_timeout = {statement_timeout_ms}"))
        depth, oldest_age, needs_review = (await db.execute(_database_gauges_query())).one()
    return [
        GaugeMetricFamily(
            "checkout_inbox_depth", "Webhook events received and not processed yet", value=int(depth)
        ),
        GaugeMetricFamily(
            "checkout_inbox_oldest_unprocessed_age_seconds",
            "Age of the oldest unprocessed webhook event (0 when the inbox is empty)",
            value=float(oldest_age or 0.0),
        ),
        GaugeMetricFamily(
            "checkout_orders_needs_review",
            "Orders in needs_review, waiting for a person",
            value=int(needs_review),
        ),
    ]


async def database_gauges(
    sessionmaker: async_sessionmaker[AsyncSession], wait_seconds: float = DATABASE_GAUGES_TIMEOUT_SECONDS
) -> list[GaugeMetricFamily]:
    """The gauges read from the database, and `checkout_database_gauges_up` (0, and no other gauge,
    when the database did not answer within `wait_seconds`)."""
    up = GaugeMetricFamily(
        "checkout_database_gauges_up", "1 when the gauges read from the database could be read at this scrape"
    )
    try:
        async with asyncio.timeout(wait_seconds):
            gauges = await _read_gauges(sessionmaker, int(wait_seconds * 1000))
    except Exception as exc:  # a scrape shows the database's trouble; it never fails with it
        log.warning("metrics_database_gauges_failed", error=type(exc).__name__)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    return [*gauges, up]


class _Families(Collector):
    def __init__(self, families: Iterable[GaugeMetricFamily]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families)


def exposition(extra: Iterable[GaugeMetricFamily] = ()) -> bytes:
    """The text exposition: every process's counters (summed from the shared directory in
    multiprocess mode, this process's otherwise), then `extra`."""
    directory = multiprocess_dir()
    if directory:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    once = CollectorRegistry(auto_describe=False)
    once.register(_Families(extra))
    return generate_latest(registry) + generate_latest(once)


# --- the endpoint ---------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Bearer METRICS_TOKEN required; without one configured the endpoint does not exist (404)."""
    # Imported here: app.auth reaches the payment workers, which count through this module.
    from app.auth import bearer_token, secrets_match

    expected = request.app.state.settings.metrics_token.get_secret_value()
    if not expected:
        raise NotFound("metrics endpoint")
    token = bearer_token(request)
    if token is None:
        raise HTTPException(
            401,
            "a bearer token is required (Authorization: Bearer <METRICS_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets_match(token, expected):
        raise HTTPException(403, "this token does not open the metrics")
    gauges = await database_gauges(request.app.state.sessionmaker)
    return Response(exposition(gauges), media_type=CONTENT_TYPE_LATEST)
