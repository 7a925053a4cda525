"""The hosted Connect page: the URL that POST /pis/v2/connect returns.

Server-rendered HTML, no JavaScript. The payer picks a bank and an outcome; the form post applies
it and sends the browser (303) to the merchant's redirect_uri with session_id, status, provider,
customer_id and state, or back to origin_uri when the payer abandons.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from simulator.fintecture.auth import get_fintecture
from simulator.fintecture.engine import DEMO_PAYEE_IBAN, OutcomeError
from simulator.fintecture.sessions import DEMO_BANKS, PAYABLE, PAYOUT

router = APIRouter(include_in_schema=False)

_templates = Environment(
    loader=ChoiceLoader(
        [PackageLoader("simulator.fintecture", "templates"), PackageLoader("simulator", "templates")]
    ),
    autoescape=select_autoescape(["html"]),
)


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**context), status_code=status_code)


def _message(title: str, message: str, status_code: int = 200, link: str | None = None) -> HTMLResponse:
    return _page("message.html", status_code, title=title, message=message, link=link)


def _unknown() -> HTMLResponse:
    return _message("Unknown payment link", "This link does not lead to a payment.", 404)


@router.get("/connect/v2/{connect_id}", response_class=HTMLResponse)
async def connect_page(connect_id: str, request: Request) -> HTMLResponse:
    sim = get_fintecture(request)
    sim.tick()
    session = sim.store.by_connect_id(connect_id)
    app = sim.app(session.app_id) if session else None
    if session is None or app is None:
        return _unknown()
    if sim.is_expired(session):
        return _message("This link has expired", "Ask the merchant for a new one.", 410, session.origin_uri)
    if session.type == PAYOUT:
        if session.status != "iban_required":
            return _message("Payout", f"This payout is {session.status}.", 200, sim.redirect_url(session))
        return _page("payout.html", merchant=app.name, session=session, demo_iban=DEMO_PAYEE_IBAN)
    if session.status not in PAYABLE:
        return _message("Payment", f"This payment is {session.status}.", 200, sim.redirect_url(session))
    banks = list(DEMO_BANKS.items())
    preselected = session.preselected_provider
    if preselected and preselected not in DEMO_BANKS:
        banks.insert(0, (preselected, preselected))
    return _page(
        "connect.html", merchant=app.name, session=session, banks=banks, selected=preselected or banks[0][0]
    )


@router.post("/connect/v2/{connect_id}")
async def connect_submit(connect_id: str, request: Request) -> Response:
    sim = get_fintecture(request)
    session = sim.store.by_connect_id(connect_id)
    if session is None:
        return _unknown()
    form = await request.form()

    def field(name: str) -> str | None:
        value = form.get(name)
        return value.strip() or None if isinstance(value, str) else None

    try:
        url = sim.complete(
            session, field("outcome") or "", bank=field("bank"), iban=field("iban"), payee_name=field("name")
        )
    except OutcomeError as exc:
        return _message("This cannot be done", exc.detail, exc.status)
    if url is None:
        return _message("All done", f"The payment is {session.status}. You can close this window.")
    return RedirectResponse(url, status_code=303)
