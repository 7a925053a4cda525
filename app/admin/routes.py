"""The operator console's pages and actions, under /admin, out of the OpenAPI document.

Pages need the console session (else a redirect to the login page); actions need the session and
its CSRF token in the form (else 401 or 403 in the error shape, and nothing is written). Each
action redirects back to its page (post/redirect/get) with a notice or an error code.
"""

# No `from __future__ import annotations`: the routes' dependencies are built per app (they close
# over its ConsoleAuth), and FastAPI must see their annotations as objects, not names to look up.
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError

from app.admin import service
from app.admin.auth import COOKIE_NAME, COOKIE_PATH, SESSION_SECONDS, ConsoleAuth, ConsoleSession, safe_next
from app.config import Settings
from app.deps import DbSession, ProvidersDep, SessionMakerDep, SettingsDep, WorkersDep
from app.errors import ApiError
from app.events.dispatcher import OutboxDispatcher
from app.http_headers import page_policy
from app.money import format_amount, to_minor_units
from app.orders.schemas import ReviewResolve
from app.orders.states import REVIEW_RESOLUTIONS, OrderStatus
from app.payments.schemas import RefundCreate
from app.payments.writer import REFUNDABLE
from app.providers.base import PayoutStatus

_HERE = Path(__file__).parent
_CSS = (_HERE / "static" / "admin.css").read_bytes()
# No script at all; the stylesheet from here; forms post only here.
POLICY = page_policy("", styles=["'self'"], connect=(), forms=["'self'"])

NOTICES = {
    "synced": "Synced with the provider.",
    "refund_requested": "Refund requested from the provider.",
    "review_resolved": "Review resolved.",
    "event_replayed": "The event will be delivered again.",
    "inbound_replayed": "The provider event will be processed again.",
    "logged_out": "Logged out.",
}
ERRORS = {
    "provider_error": "The provider could not answer. Nothing was changed from its side; try again later.",
    "no_payment_session": "This order has no payment session to sync.",
    "review_not_open": "This order is not in needs_review (any more): someone may have resolved it first.",
    "invalid_resolution": "Choose paid or failed, and write a note (at most 1000 characters).",
    "invalid_refund": "The refund amount or reason is not valid.",
    "order_not_refundable": "Only a paid or partially refunded order can be refunded.",
    "refund_exceeds_payment": "Refunds cannot add up to more than was paid.",
    "nothing_to_refund": "Everything paid has been refunded already.",
    "refund_refused": "The provider refused the refund.",
    "event_busy": "That provider event is being processed right now.",
    "event_not_routed": "That event has not been sent yet.",
}
_CODE = re.compile(r"^[a-z_]{1,40}$")
_PROVIDER = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REFERENCE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _dt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"), autoescape=True, undefined=StrictUndefined
    )
    env.filters["money"] = format_amount
    env.filters["dt"] = _dt
    env.filters["tojson_pretty"] = service.pretty_json
    return env


def _notice_and_error(request: Request) -> tuple[str | None, str | None]:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    code = request.query_params.get("error", "")
    error = None
    if _CODE.match(code):
        error = ERRORS.get(code, f"The action was refused ({code}).")
    return notice, error


def _back(url: str, **params: str) -> RedirectResponse:
    return RedirectResponse(f"{url}?{urlencode(params)}", status_code=303)


class _Filters:
    """The list pages' query: each value checked, kept as typed for the form, an error per bad one."""

    def __init__(self, request: Request) -> None:
        self.raw = {
            k: request.query_params.get(k, "").strip()[:100]
            for k in ("status", "provider", "from", "to", "reference", "page")
        }
        self.errors: list[str] = []

    def choice(self, name: str, allowed: Mapping[str, Any]) -> Any:
        value = self.raw[name]
        if not value:
            return None
        if value not in allowed:
            self.errors.append(f"unknown {name} {value!r}")
            return None
        return allowed[value]

    def matching(self, name: str, pattern: re.Pattern[str]) -> str | None:
        value = self.raw[name]
        if not value:
            return None
        if not pattern.match(value):
            self.errors.append(f"{name} {value!r} is not valid")
            return None
        return value

    def day(self, name: str) -> date | None:
        value = self.raw[name]
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.errors.append(f"{name} must be a date like 2026-12-31")
            return None

    def page(self) -> int:
        value = self.raw["page"] or "1"
        if not value.isdigit() or not 1 <= int(value) <= service.MAX_PAGE:
            self.errors.append(f"page must be 1 to {service.MAX_PAGE}")
            return 1
        return int(value)

    def url(self, path: str, page: int) -> str:
        query = {k: v for k, v in self.raw.items() if v and k != "page"}
        return f"{path}?{urlencode({**query, 'page': str(page)})}"


async def _dispatcher(request: Request) -> OutboxDispatcher:
    dispatcher: OutboxDispatcher = request.app.state.dispatcher
    return dispatcher


def build_router(settings: Settings) -> APIRouter:
    auth = ConsoleAuth(settings)
    env = _environment()
    router = APIRouter(include_in_schema=False)

    def render(
        template: str,
        session: ConsoleSession | None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        context.setdefault("notice", None)
        context.setdefault("error", None)
        html = env.get_template(template).render(csrf=session.csrf_token if session else None, **context)
        return HTMLResponse(
            html, status_code=status, headers={"Content-Security-Policy": POLICY, **(headers or {})}
        )

    def current(request: Request) -> ConsoleSession | None:
        return auth.read(request.cookies.get(COOKIE_NAME))

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{COOKIE_PATH}/login?next={quote(target, safe='')}", status_code=303)

    async def action_form(request: Request) -> dict[str, str]:
        """The session and its CSRF token, checked before anything else is read or written."""
        session = current(request)
        if session is None:
            raise ApiError(401, "console_session_required", "log in to the operator console first")
        form = await request.form(max_files=0, max_fields=16)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not auth.csrf_matches(session, fields.get("csrf_token")):
            raise ApiError(403, "csrf_failed", "the form's CSRF token is missing or not this session's")
        return fields

    Action = Annotated[dict[str, str], Depends(action_form)]

    def not_found(session: ConsoleSession | None, what: str) -> HTMLResponse:
        return render(
            "message.html", session, status=404, title=f"No such {what}", message=f"No {what} has this id."
        )

    @router.get("/admin")
    async def home() -> RedirectResponse:
        return RedirectResponse(f"{COOKIE_PATH}/orders", status_code=303)

    @router.get("/admin/static/admin.css")
    async def stylesheet() -> Response:
        return Response(_CSS, media_type="text/css", headers={"Cache-Control": "private, max-age=3600"})

    # --- session ---------------------------------------------------------------------------------

    @router.get("/admin/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if current(request) is not None:
            return RedirectResponse(target, status_code=303)
        notice, error = _notice_and_error(request)
        return render(
            "login.html",
            None,
            title="Log in",
            next=target,
            hours=SESSION_SECONDS // 3600,
            notice=notice,
            error=error,
        )

    @router.post("/admin/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        form = await request.form(max_files=0, max_fields=8)
        target = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)  # type: ignore[arg-type]
        hours = SESSION_SECONDS // 3600
        retry_after = auth.login_retry_after(client)
        if retry_after is not None:
            return render(
                "login.html",
                None,
                status=429,
                headers={"Retry-After": str(retry_after)},
                title="Log in",
                next=target,
                hours=hours,
                error=f"Too many failed attempts from here; try again in {retry_after} s.",
            )
        key = form.get("key")
        if not isinstance(key, str) or not auth.enabled or not auth.key_matches(key):
            auth.login_failed(client)
            return render(
                "login.html",
                None,
                status=401,
                title="Log in",
                next=target,
                hours=hours,
                error="That is not the operator key.",
            )
        auth.login_succeeded(client)
        cookie, _ = auth.issue()
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=SESSION_SECONDS,
            path=COOKIE_PATH,
            secure=auth.secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return response

    @router.post("/admin/logout")
    async def logout(form: Action) -> Response:
        response = _back(f"{COOKIE_PATH}/login", notice="logged_out")
        response.delete_cookie(
            COOKIE_NAME, path=COOKIE_PATH, secure=auth.secure_cookie, httponly=True, samesite="strict"
        )
        return response

    # --- orders ----------------------------------------------------------------------------------

    @router.get("/admin/orders", response_class=HTMLResponse)
    async def orders_page(request: Request, db: DbSession, providers: ProvidersDep) -> Response:
        session = current(request)
        if session is None:
            return to_login(request)
        filters = _Filters(request)
        status = filters.choice("status", {s.value: s for s in OrderStatus})
        provider = filters.matching("provider", _PROVIDER)
        reference = filters.matching("reference", _REFERENCE)
        created_from, created_to = filters.day("from"), filters.day("to")
        page = filters.page()
        orders: list[Any] = []
        more = False
        if not filters.errors:
            orders, more = await service.list_orders(
                db,
                status=status,
                provider=provider,
                reference=reference.upper() if reference else None,
                created_from=created_from,
                created_to=created_to,
                page=page,
            )
        notice, error = _notice_and_error(request)
        return render(
            "orders.html",
            session,
            status=422 if filters.errors else 200,
            title="Orders",
            statuses=[s.value for s in OrderStatus],
            providers=sorted(providers),
            filters=filters.raw,
            orders=orders,
            page=page,
            page_size=service.PAGE_SIZE,
            prev_url=filters.url("/admin/orders", page - 1) if page > 1 else None,
            next_url=filters.url("/admin/orders", page + 1) if more and page < service.MAX_PAGE else None,
            notice=notice,
            error="; ".join(filters.errors) if filters.errors else error,
        )

    @router.get("/admin/orders/{order_id}", response_class=HTMLResponse)
    async def order_page(order_id: str, request: Request, db: DbSession) -> Response:
        session = current(request)
        if session is None:
            return to_login(request)
        try:
            detail = await service.order_detail(db, order_id)
        except ApiError:
            return not_found(session, "order")
        notice, error = _notice_and_error(request)
        return render(
            "order.html",
            session,
            title=f"Order {detail.order.reference}",
            order=detail.order,
            transitions=detail.transitions,
            sessions=detail.sessions,
            refunds=detail.refunds,
            inbound=detail.inbound,
            outbound=detail.outbound,
            resolutions=sorted(s.value for s in REVIEW_RESOLUTIONS),
            refundable=detail.order.status in REFUNDABLE,
            refund_key=f"console-{secrets.token_urlsafe(16)}",
            back=f"/admin/orders/{detail.order.id}",
            notice=notice,
            error=error,
        )

    async def _order_action(order_id: str, done: str, run: Callable[[uuid.UUID], Any]) -> RedirectResponse:
        parsed = service.parse_id(order_id, "order")
        page = f"{COOKIE_PATH}/orders/{parsed}"
        try:
            await run(parsed)
        except ApiError as exc:
            return _back(page, error=exc.code)
        return _back(page, notice=done)

    @router.post("/admin/orders/{order_id}/sync")
    async def sync_order(
        order_id: str, form: Action, sessionmaker: SessionMakerDep, providers: ProvidersDep
    ) -> Response:
        return await _order_action(
            order_id, "synced", lambda parsed: service.sync_order(sessionmaker, parsed, providers)
        )

    @router.post("/admin/orders/{order_id}/refunds")
    async def refund_order(
        order_id: str,
        form: Action,
        sessionmaker: SessionMakerDep,
        providers: ProvidersDep,
        settings: SettingsDep,
        db: DbSession,
    ) -> Response:
        parsed = service.parse_id(order_id, "order")
        currency = await service.order_currency(db, parsed)
        await db.commit()  # nothing held while the provider is asked
        page = f"{COOKIE_PATH}/orders/{parsed}"
        key = form.get("idempotency_key", "")
        try:
            amount_text = form.get("amount", "").strip()
            amount = to_minor_units(Decimal(amount_text), currency) if amount_text else None
            ask = RefundCreate.model_validate(
                {"amount": amount, "reason": form.get("reason", "").strip() or None}
            )
        except (InvalidOperation, ValueError, ValidationError):
            return _back(page, error="invalid_refund")
        if not re.match(r"^console-[A-Za-z0-9_-]{16,40}$", key):
            return _back(page, error="invalid_refund")
        return await _order_action(
            order_id,
            "refund_requested",
            lambda _: service.refund(
                sessionmaker,
                parsed,
                providers,
                settings,
                amount=ask.amount,
                reason=ask.reason,
                idempotency_key=key,
            ),
        )

    @router.post("/admin/orders/{order_id}/review/resolve")
    async def resolve_review(order_id: str, form: Action, sessionmaker: SessionMakerDep) -> Response:
        parsed = service.parse_id(order_id, "order")
        try:
            decision = ReviewResolve.model_validate({"to": form.get("to"), "note": form.get("note", "")})
        except ValidationError:
            return _back(f"{COOKIE_PATH}/orders/{parsed}", error="invalid_resolution")
        return await _order_action(
            order_id,
            "review_resolved",
            lambda _: service.resolve_review(sessionmaker, parsed, OrderStatus(decision.to), decision.note),
        )

    # --- events ----------------------------------------------------------------------------------

    @router.post("/admin/events/outbound/{event_id}/replay")
    async def replay_outbound(
        event_id: str,
        form: Action,
        sessionmaker: SessionMakerDep,
        dispatcher: Annotated[OutboxDispatcher, Depends(_dispatcher)],
    ) -> Response:
        back = safe_next(form.get("back"))
        if not re.match(r"^[A-Za-z0-9_]{1,40}$", event_id):
            raise ApiError(404, "not_found", "event not found")
        try:
            await service.replay_outbound(sessionmaker, event_id)
        except ApiError as exc:
            return _back(back, error=exc.code)
        dispatcher.wake()
        return _back(back, notice="event_replayed")

    @router.post("/admin/events/inbound/{event_id}/replay")
    async def replay_inbound(
        event_id: str, form: Action, sessionmaker: SessionMakerDep, workers: WorkersDep
    ) -> Response:
        back = safe_next(form.get("back"))
        if not event_id.isdigit() or not 1 <= int(event_id) < 2**63:
            raise ApiError(404, "not_found", "event not found")
        try:
            await service.replay_inbound(sessionmaker, int(event_id))
        except ApiError as exc:
            return _back(back, error=exc.code)
        workers.notify()
        return _back(back, notice="inbound_replayed")

    # --- payouts ---------------------------------------------------------------------------------

    @router.get("/admin/payouts", response_class=HTMLResponse)
    async def payouts_page(request: Request, db: DbSession) -> Response:
        session = current(request)
        if session is None:
            return to_login(request)
        filters = _Filters(request)
        status = filters.choice("status", {s.value: s for s in PayoutStatus})
        reference = filters.matching("reference", _REFERENCE)
        created_from, created_to = filters.day("from"), filters.day("to")
        page = filters.page()
        payouts: list[Any] = []
        more = False
        if not filters.errors:
            payouts, more = await service.list_payouts(
                db,
                status=status,
                reference=reference,
                created_from=created_from,
                created_to=created_to,
                page=page,
            )
        notice, error = _notice_and_error(request)
        return render(
            "payouts.html",
            session,
            status=422 if filters.errors else 200,
            title="Payouts",
            statuses=[s.value for s in PayoutStatus],
            filters=filters.raw,
            payouts=payouts,
            page=page,
            page_size=service.PAGE_SIZE,
            prev_url=filters.url("/admin/payouts", page - 1) if page > 1 else None,
            next_url=filters.url("/admin/payouts", page + 1) if more and page < service.MAX_PAGE else None,
            notice=notice,
            error="; ".join(filters.errors) if filters.errors else error,
        )

    @router.get("/admin/payouts/{payout_id}", response_class=HTMLResponse)
    async def payout_page(payout_id: str, request: Request, db: DbSession) -> Response:
        session = current(request)
        if session is None:
            return to_login(request)
        try:
            detail = await service.payout_detail(db, payout_id)
        except ApiError:
            return not_found(session, "payout")
        notice, error = _notice_and_error(request)
        return render(
            "payout.html",
            session,
            title=f"Payout {detail.payout.reference}",
            payout=detail.payout,
            transitions=detail.transitions,
            inbound=detail.inbound,
            outbound=detail.outbound,
            back=f"/admin/payouts/{detail.payout.id}",
            notice=notice,
            error=error,
        )

    @router.post("/admin/payouts/{payout_id}/sync")
    async def sync_payout(
        payout_id: str, form: Action, sessionmaker: SessionMakerDep, providers: ProvidersDep
    ) -> Response:
        parsed = service.parse_id(payout_id, "payout")
        page = f"{COOKIE_PATH}/payouts/{parsed}"
        try:
            await service.sync_payout(sessionmaker, providers, str(parsed))
        except ApiError as exc:
            return _back(page, error=exc.code)
        return _back(page, notice="synced")

    return router
