"""The hosted webview (contract §3) with the test connector (§7), and the cancellation consent page.

`GET <POWENS_WEBVIEW_URL>/{lang}/payment?domain=…&client_id=…&redirect_uri=…&code=<scoped
token>&payment_id=…[&state=…]` stands for `https://webview.powens.com/{lang}/payment?…`. Every
parameter is checked: the client, its domain, a registered `redirect_uri`, and a live
payment-scoped token with `payments:validate` for this very payment. Server-rendered HTML, no
JavaScript. The payer picks a scenario (the label's by default) and confirms or cancels; the form
post answers 303 to the callback.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from simulator.config import PowensAppConfig
from simulator.powens.auth import get_powens
from simulator.powens.engine import WEBVIEW_PREFIX, OutcomeError, PowensSim
from simulator.powens.payments import (
    DEFAULT_SCENARIO,
    TEST_CONNECTOR_NAME,
    TEST_CONNECTOR_UUID,
    Payment,
    parse_scenario,
    plan,
)

router = APIRouter(prefix=WEBVIEW_PREFIX, include_in_schema=False)

_templates = Environment(
    loader=ChoiceLoader(
        [PackageLoader("simulator.powens", "templates"), PackageLoader("simulator", "templates")]
    ),
    autoescape=select_autoescape(["html"]),
)
_LANG = re.compile(r"[a-z]{2}")
_PRESETS = [
    ("done", "done at once"),
    ("pdng", "pending for one phase, then done"),
    ("pdng/rjct", "pending, then rejected by the bank"),
    ("canc", "rejected: cancelled by you at the bank"),
    ("rjct", "rejected by the bank"),
    ("err", "rejected by the bank: invalid amount"),
    ("bug", "an error during the initiation"),
]


class WebviewError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**context), status_code=status_code)


def _message(title: str, message: str, status_code: int = 200, link: str | None = None) -> HTMLResponse:
    return _page("message.html", status_code, title=title, message=message, link=link)


def _checked(powens: PowensSim, lang: str, request: Request) -> tuple[PowensAppConfig, Payment, str]:
    """The client, the payment and the redirect_uri of a webview URL, or WebviewError."""
    if not _LANG.fullmatch(lang):
        raise WebviewError(404, "Unknown page", "This link does not lead to a payment.")
    query = request.query_params
    missing = [
        name for name in ("domain", "client_id", "redirect_uri", "code", "payment_id") if not query.get(name)
    ]
    if missing:
        raise WebviewError(400, "Invalid payment link", "Missing parameters: " + ", ".join(missing) + ".")
    app = powens.app(query["client_id"])
    if app is None:
        raise WebviewError(400, "Invalid payment link", "Unknown client_id.")
    if not app.matches_domain(query["domain"]):
        raise WebviewError(400, "Invalid payment link", "The domain is not the client's.")
    if not app.allows_redirect(query["redirect_uri"]):
        raise WebviewError(400, "Invalid payment link", "The redirect_uri is not registered on this client.")
    token = powens.live_token(query["code"])
    if token is None:
        raise WebviewError(401, "This link has expired", "Ask the merchant for a new one.")
    payment = powens.own_payment(app.client_id, query["payment_id"])
    if token.client_id != app.client_id or payment is None or token.payment_id != payment.id:
        raise WebviewError(403, "Invalid payment link", "The code is not for this payment.")
    if "payments:validate" not in token.scopes:
        raise WebviewError(403, "Invalid payment link", "The code lacks the payments:validate scope.")
    return app, payment, query["redirect_uri"]


def _phase(powens: PowensSim, payment: Payment) -> str:
    seconds = powens.config.powens_phase_seconds.for_type(payment.instruction.execution_date_type)
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


@router.get("/bank/{payment_id}", response_class=HTMLResponse)
async def bank_page(payment_id: str) -> HTMLResponse:
    """What a payment's `validate_uri` points at while it is `validating`."""
    return _message(
        TEST_CONNECTOR_NAME,
        "The simulated bank takes the payer's answer from the webview; there is nothing to do here.",
    )


@router.get("/cancel/{key}", response_class=HTMLResponse)
async def cancel_page(key: str, request: Request) -> HTMLResponse:
    powens = get_powens(request)
    powens.tick()
    payment = powens.by_cancel_key(key)
    app = powens.app(payment.client_id) if payment else None
    if payment is None or app is None:
        return _message("Unknown link", "No cancellation is waiting behind this link.", 404)
    return _page(
        "cancel.html",
        merchant=app.name,
        amount=f"{payment.instruction.amount:.2f}",
        currency=payment.instruction.currency,
    )


@router.post("/cancel/{key}")
async def cancel_submit(key: str, request: Request) -> Response:
    powens = get_powens(request)
    powens.tick()
    payment = powens.by_cancel_key(key)
    if payment is None:
        return _message("Unknown link", "No cancellation is waiting behind this link.", 404)
    outcome = (await request.form()).get("outcome")
    if outcome not in {"confirm_cancel", "refuse_cancel"}:
        return _message("This cannot be done", "Choose to cancel the payment or to keep it.", 400)
    try:
        url = powens.complete(payment, str(outcome))
    except OutcomeError as exc:
        return _message("This cannot be done", exc.detail, exc.status)
    return RedirectResponse(url or "/", status_code=303)


async def _webview(lang: str, request: Request) -> HTMLResponse:
    powens = get_powens(request)
    powens.tick()
    try:
        app, payment, _redirect_uri = _checked(powens, lang, request)
    except WebviewError as exc:
        return _message(exc.title, exc.message, exc.status)
    if payment.state != "created":
        return _message("Payment", f"This payment is {payment.state}.", 409)
    label_codes = parse_scenario(payment.instruction.label) or DEFAULT_SCENARIO
    instruction = payment.instruction
    return _page(
        "webview.html",
        merchant=app.name,
        amount=f"{instruction.amount:.2f}",
        currency=instruction.currency,
        beneficiary=instruction.beneficiary,
        label=instruction.label,
        label_plan=" → ".join(plan(label_codes)),
        presets=_PRESETS,
        phase=_phase(powens, payment),
        connector_uuid=payment.connector_uuid or TEST_CONNECTOR_UUID,
        connector_name=TEST_CONNECTOR_NAME,
    )


async def _webview_submit(lang: str, request: Request) -> Response:
    powens = get_powens(request)
    try:
        _app, payment, redirect_uri = _checked(powens, lang, request)
    except WebviewError as exc:
        return _message(exc.title, exc.message, exc.status)
    form = await request.form()
    outcome = form.get("outcome")
    scenario = form.get("scenario")
    if outcome not in {"validate", "cancel"}:
        return _message("This cannot be done", "Confirm the payment or cancel it.", 400)
    try:
        url = powens.complete(
            payment,
            str(outcome),
            scenario=scenario.strip() or None if isinstance(scenario, str) else None,
            redirect_uri=redirect_uri,
        )
    except OutcomeError as exc:
        return _message("This cannot be done", exc.detail, exc.status)
    return RedirectResponse(url or "/", status_code=303)


@router.get("/{lang}/payment", response_class=HTMLResponse)
async def webview(lang: str, request: Request) -> HTMLResponse:
    return await _webview(lang, request)


@router.post("/{lang}/payment")
async def webview_submit(lang: str, request: Request) -> Response:
    return await _webview_submit(lang, request)


@router.get("/payment", response_class=HTMLResponse)
async def webview_default_language(request: Request) -> HTMLResponse:
    return await _webview("en", request)


@router.post("/payment")
async def webview_default_language_submit(request: Request) -> Response:
    return await _webview_submit("en", request)
