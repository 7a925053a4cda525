"""The Fintecture adapter: PIS token, signed requests, payment sessions, payment reads, webhooks.

Wire contract: contracts/fintecture.md (§1 token, §2 signing, §4 connect, §5 payment, §11 errors).
One shared `httpx.AsyncClient` is passed in; the private key is parsed once by the caller.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from app import money
from app.logging_setup import get_logger
from app.orders.states import OrderStatus
from app.providers.base import (
    CreatedSession,
    PaymentSnapshot,
    ProviderError,
    SessionRequest,
    WebhookHint,
)
from app.providers.fintecture import webhooks
from app.providers.fintecture.signing import http_date, sign_request
from app.providers.fintecture.statuses import map_status

if TYPE_CHECKING:
    from app.config import Settings

log = get_logger(__name__)

TOKEN_PATH = "/oauth/accesstoken"  # noqa: S105 - a path, not a secret
CONNECT_PATH = "/pis/v2/connect"
PAYMENTS_PATH = "/pis/v2/payments"

# Statuses worth trying again later; the subset a GET retries by itself.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
AUTO_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_STATUS_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_MAX_STATE_LENGTH = 512


def format_amount(amount: Decimal, currency: str) -> str:
    """The decimal string Fintecture wants, with exactly the currency's minor digits ('273.50')."""
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be a positive finite number")
    return money.format_amount(money.to_minor_units(amount, currency.upper()), currency.upper())


def parse_amount(value: object) -> Decimal | None:
    """A provider amount ('273', '550.60', or a JSON number) as Decimal; None when absent or bad."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = repr(value)
    if not isinstance(value, str):
        return None
    try:
        parsed = Decimal(value.strip())
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def encode_query(params: Sequence[tuple[str, str]]) -> str:
    """Percent-encode every reserved character, so the query we sign is the query on the wire."""
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in params)


def encode_json(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the Digest is computed over exactly these bytes, and they are what is sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _two_letters(value: str | None) -> str | None:
    if not value:
        return None
    head = value.strip()[:2]
    if len(head) == 2 and head.isascii() and head.isalpha():
        return head
    return None


def _retry_after_seconds(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _error_details(response: httpx.Response) -> tuple[str | None, str | None, str]:
    """(code, log_id, short detail) from the §11 error shape; tolerant of anything else."""
    try:
        body = response.json()
    except ValueError:
        return None, None, ""
    if not isinstance(body, dict):
        return None, None, ""
    code = body.get("code") if isinstance(body.get("code"), str) else None
    log_id = body.get("log_id") if isinstance(body.get("log_id"), str) else None
    parts: list[str] = []
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors[:3]:
            if not isinstance(error, dict):
                continue
            if code is None and isinstance(error.get("code"), str):
                code = error["code"]
            text = " ".join(
                str(error[key]) for key in ("code", "title", "detail", "message") if error.get(key)
            )
            if text:
                parts.append(text)
    return code, log_id, "; ".join(parts)[:300]


def connect_request(
    request: SessionRequest,
) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, Any]]:
    """Query parameters, extra headers and JSON body of POST /pis/v2/connect (§4)."""
    currency = request.currency.strip().upper()
    if not _CURRENCY.match(currency):
        raise ValueError("currency must be an ISO 4217 code")
    if not request.state or len(request.state) > _MAX_STATE_LENGTH:
        raise ValueError(f"state must be 1 to {_MAX_STATE_LENGTH} characters")
    if not request.redirect_uri:
        raise ValueError("redirect_uri is required")
    payer = request.payer
    meta: dict[str, Any] = {"psu_name": payer.name, "psu_email": payer.email}
    if payer.phone:
        meta["psu_phone"] = payer.phone
    if payer.company:
        meta["psu_company"] = payer.company
    if payer.address:
        address = {
            key: str(payer.address[key])
            for key in ("street", "number", "complement", "zip", "city", "country")
            if payer.address.get(key) not in (None, "")
        }
        if address:
            meta["psu_address"] = address
    if payer.ip:
        meta["psu_ip"] = payer.ip
    meta["expiry"] = request.expiry_seconds
    body: dict[str, Any] = {
        "meta": meta,
        "data": {
            "type": "PIS",
            "attributes": {
                "amount": format_amount(request.amount, currency),
                "currency": currency,
                "communication": request.communication,
            },
        },
    }
    query = [("state", request.state), ("redirect_uri", request.redirect_uri)]
    if request.origin_uri:
        query.append(("origin_uri", request.origin_uri))
    headers = {"x-psu-type": "retail"}
    if language := _two_letters(request.language):
        headers["x-language"] = language.lower()
    if country := _two_letters(request.country):
        headers["x-country"] = country.upper()
    if request.bank_id:
        headers["x-provider"] = request.bank_id
    return query, headers, body


class FintectureProvider:
    """Fintecture PIS through one shared HTTP client. Safe for concurrent use."""

    name: str = "fintecture"

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        app_id: str,
        app_secret: str,
        base_url: str,
        private_key: rsa.RSAPrivateKey | None = None,
        production: bool = False,
        timeout_seconds: float = 10.0,
        max_retries: int = 3,
        webhook_tolerance_seconds: int = 300,
        retry_base_delay: float = 0.2,
        retry_max_delay: float = 3.0,
        retry_after_cap: float = 10.0,
        token_refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not app_id:
            raise ValueError("a Fintecture app_id is required")
        if production and private_key is None:
            raise ValueError("production requires a private key to sign requests")
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("the Fintecture base URL must be http(s)://host[/path]")
        if production and parts.scheme != "https":
            raise ValueError("production requires an https Fintecture base URL")
        self._http = http
        self._app_id = app_id
        self._basic = "Basic " + base64.b64encode(f"{app_id}:{app_secret}".encode()).decode("ascii")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path  # a prefix the API is mounted under, signed as part of the path
        self._private_key = private_key
        self._production = production
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._webhook_tolerance = webhook_tolerance_seconds
        self._retry_base_delay = retry_base_delay
        self._retry_max_delay = retry_max_delay
        self._retry_after_cap = retry_after_cap
        self._token_margin = token_refresh_margin
        self._clock = clock
        self._now = now or (lambda: datetime.now(UTC))
        self._sleep = sleep
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()
        self._mint_attempts = 0
        self._mint_failure: ProviderError | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, http: httpx.AsyncClient, *, private_key: rsa.RSAPrivateKey | None
    ) -> FintectureProvider:
        return cls(
            http=http,
            app_id=settings.fintecture_app_id.strip(),
            app_secret=settings.fintecture_app_secret.get_secret_value(),
            base_url=settings.fintecture_base_url,
            private_key=private_key,
            production=settings.is_production,
            timeout_seconds=settings.provider_timeout_seconds,
            max_retries=settings.provider_max_retries,
            webhook_tolerance_seconds=settings.webhook_tolerance_seconds,
        )

    @property
    def signs_requests(self) -> bool:
        return self._private_key is not None

    def __repr__(self) -> str:  # never show the secret or the key
        return f"FintectureProvider(app_id={self._app_id!r}, base={self._origin}{self._base_path})"

    # --- Provider protocol ------------------------------------------------------------------------

    async def create_session(self, request: SessionRequest) -> CreatedSession:
        query, headers, body = connect_request(request)
        response = await self._api("POST", CONNECT_PATH, query=query, json_body=body, headers=headers)
        data = self._json(response, "connect")
        meta_out = _obj(data.get("meta"))
        session_id = meta_out.get("session_id")
        url = meta_out.get("url")
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            raise ProviderError(
                "Fintecture connect answered without a valid session_id",
                http_status=200,
                code="invalid_response",
            )
        allowed = {"https"} if self._production else {"https", "http"}
        if not isinstance(url, str) or urlsplit(url).scheme not in allowed or not urlsplit(url).netloc:
            raise ProviderError(
                "Fintecture connect answered without a valid url", http_status=200, code="invalid_response"
            )
        log.info("fintecture.session_created", session_id=session_id)
        return CreatedSession(provider_session_id=session_id, connect_url=url)

    async def get_payment(self, provider_session_id: str) -> PaymentSnapshot:
        if not _SESSION_ID.match(provider_session_id):
            raise ValueError("not a Fintecture session id")
        path = f"{PAYMENTS_PATH}/{quote(provider_session_id, safe='')}"
        try:
            response = await self._api("GET", path)
        except ProviderError as exc:
            if exc.http_status == 404:
                raise ProviderError(
                    "Fintecture has no such payment session",
                    http_status=404,
                    code="not_found",
                    log_id=exc.log_id,
                    retryable=False,
                ) from exc
            raise
        body = self._json(response, "payment read", retryable=True)
        meta = _obj(body.get("meta"))
        data = _obj(body.get("data"))
        attributes = _obj(data.get("attributes"))

        returned_id = meta.get("session_id") or data.get("id")
        if returned_id is not None and returned_id != provider_session_id:
            raise ProviderError(
                "Fintecture answered for another session", http_status=200, code="invalid_response"
            )
        raw_status = meta.get("status")
        if not isinstance(raw_status, str) or not raw_status:
            raise ProviderError(
                "Fintecture payment has no status", http_status=200, code="invalid_response", retryable=True
            )
        transfer_state = attributes.get("transfer_state") or data.get("transfer_state")
        if not isinstance(transfer_state, str) or not transfer_state:
            transfer_state = None
        amount = parse_amount(attributes.get("amount"))
        currency = attributes.get("currency")
        currency = currency.strip().upper() if isinstance(currency, str) and currency.strip() else None
        communication = attributes.get("communication")

        status, reason = map_status(raw_status, transfer_state)
        if status is OrderStatus.PAID and (amount is None or currency is None):
            # Never report money as received without knowing how much.
            status, reason = OrderStatus.NEEDS_REVIEW, "paid status without a readable amount and currency"
        return PaymentSnapshot(
            provider=self.name,
            provider_session_id=provider_session_id,
            status=status,
            raw_status=raw_status,
            transfer_state=transfer_state,
            amount=amount,
            currency=currency,
            communication=communication if isinstance(communication, str) else None,
            customer_id=_str_or_none(meta.get("customer_id")),
            bank_id=_str_or_none(meta.get("provider")),
            review_reason=reason,
            raw=body,
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookHint:
        return webhooks.verify_webhook(
            private_key=self._private_key,
            app_id=self._app_id,
            headers=headers,
            body=body,
            now=now,
            tolerance_seconds=self._webhook_tolerance,
        )

    # --- Token (§1) -------------------------------------------------------------------------------

    async def _access_token(self) -> str:
        token = self._token
        if token is not None and self._clock() < self._token_expires_at:
            return token
        attempt_seen = self._mint_attempts
        async with self._token_lock:
            # Another caller may have minted while this one waited for the lock.
            if self._token is not None and self._clock() < self._token_expires_at:
                return self._token
            failure = self._mint_failure
            if failure is not None and self._mint_attempts != attempt_seen:
                # The mint this caller waited on just failed: share its answer instead of queueing
                # one more attempt per waiting caller behind a failing token endpoint.
                raise ProviderError(
                    failure.args[0] if failure.args else "Fintecture token request failed",
                    http_status=failure.http_status,
                    code=failure.code,
                    log_id=failure.log_id,
                    retryable=failure.retryable,
                )
            self._mint_attempts += 1
            try:
                token, lifetime = await self._mint_token()
            except ProviderError as exc:
                self._mint_failure = exc
                raise
            self._mint_failure = None
            self._token = token
            self._token_expires_at = self._clock() + lifetime - min(self._token_margin, lifetime / 2)
            return token

    def _forget_token(self, token: str) -> None:
        # Only the token that was refused: a newer one minted meanwhile stays.
        if self._token == token:
            self._token = None

    async def _mint_token(self) -> tuple[str, float]:
        form = urlencode([("grant_type", "client_credentials"), ("app_id", self._app_id), ("scope", "PIS")])
        # Minting has no side effect on the provider: safe to retry like a GET.
        response = await self._send(
            "POST",
            TOKEN_PATH,
            body=form.encode("ascii"),
            headers={
                "Authorization": self._basic,
                "Content-Type": "application/x-www-form-urlencoded",
            },
            idempotent=True,
        )
        if not response.is_success:
            raise self._error(response, "token request")
        body = self._json(response, "token request", retryable=True)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise ProviderError(
                "Fintecture token response has no access_token",
                http_status=200,
                code="invalid_response",
                retryable=True,
            )
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else 300.0
        log.info("fintecture.token_minted", expires_in=lifetime)
        return token, lifetime

    # --- Requests ---------------------------------------------------------------------------------

    async def _api(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        json_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """An authenticated call; one re-mint and one retry when the token is refused (401)."""
        body = None
        all_headers = dict(headers or {})
        if json_body is not None:
            body = encode_json(json_body)
            all_headers["Content-Type"] = "application/json"
        idempotent = method in {"GET", "HEAD"}
        for attempt in range(2):
            token = await self._access_token()
            response = await self._send(
                method,
                path,
                query=query,
                body=body,
                headers={**all_headers, "Authorization": f"Bearer {token}"},
                idempotent=idempotent,
            )
            if response.status_code == 401 and attempt == 0:
                # A 401 is refused before any work is done, so even a POST can be sent again.
                log.info("fintecture.token_refused", path=path)
                self._forget_token(token)
                continue
            if response.is_success:
                return response
            raise self._error(response, f"{method} {path.split('?')[0]}")
        raise AssertionError("unreachable")

    def signed_request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """The exact request to send: URL built here so the signed target is the raw wire target."""
        target = self._base_path + path + (f"?{encode_query(query)}" if query else "")
        request_headers = {"Accept": "application/json", **(headers or {})}
        request_id = str(uuid.uuid4())
        if self._private_key is not None:
            request_headers.update(
                sign_request(
                    self._private_key,
                    self._app_id,
                    method=method,
                    target=target,
                    body=body,
                    date=http_date(self._now()),
                    request_id=request_id,
                )
            )
        else:
            request_headers["X-Request-ID"] = request_id
        return self._http.build_request(
            method, self._origin + target, content=body, headers=request_headers, timeout=self._timeout
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str],
        idempotent: bool,
    ) -> httpx.Response:
        """Sign and send; retry network errors and 429/5xx with back-off, but only when safe.

        Returns the last response (success or not). A request that certainly never reached the
        server (connection refused, connect or pool timeout) is retried whatever its method; a
        non-idempotent one that may have arrived is never sent twice.
        """
        attempt = 0
        while True:
            # Signed afresh on every attempt: new Date and X-Request-ID.
            request = self.signed_request(method, path, query=query, body=body, headers=headers)
            try:
                response = await self._http.send(request)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if attempt < self._max_retries:
                    await self._back_off(attempt, path, type(exc).__name__)
                    attempt += 1
                    continue
                raise ProviderError(
                    f"Fintecture unreachable ({type(exc).__name__})", code="network_error", retryable=True
                ) from exc
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if idempotent and attempt < self._max_retries:
                    await self._back_off(attempt, path, type(exc).__name__)
                    attempt += 1
                    continue
                outcome = "" if idempotent else "; the request may have been processed"
                raise ProviderError(
                    f"Fintecture call failed ({type(exc).__name__}){outcome}",
                    code="network_error",
                    retryable=True,
                ) from exc

            if response.status_code in AUTO_RETRY_STATUSES and idempotent and attempt < self._max_retries:
                delay = self._delay_for(response, attempt)
                if delay is not None:
                    log.warning(
                        "fintecture.retry",
                        path=path,
                        http_status=response.status_code,
                        attempt=attempt + 1,
                        delay=round(delay, 3),
                    )
                    await self._sleep(delay)
                    attempt += 1
                    continue
            return response

    def _backoff_delay(self, attempt: int) -> float:
        ceiling = min(self._retry_max_delay, self._retry_base_delay * (2.0**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # equal jitter: spread, never zero

    def _delay_for(self, response: httpx.Response, attempt: int) -> float | None:
        """Back-off for a retryable status; None when the server asks for a longer wait than we hold."""
        if response.status_code in {429, 503}:
            asked = _retry_after_seconds(response.headers.get("retry-after"), self._now())
            if asked is not None:
                return asked if asked <= self._retry_after_cap else None
        return self._backoff_delay(attempt)

    async def _back_off(self, attempt: int, path: str, reason: str) -> None:
        delay = self._backoff_delay(attempt)
        log.warning("fintecture.retry", path=path, reason=reason, attempt=attempt + 1, delay=round(delay, 3))
        await self._sleep(delay)

    # --- Responses --------------------------------------------------------------------------------

    @staticmethod
    def _json(response: httpx.Response, context: str, *, retryable: bool = False) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(
                f"Fintecture {context} answered with a body that is not a JSON object",
                http_status=response.status_code,
                code="invalid_response",
                retryable=retryable,
            )
        return body

    @staticmethod
    def _error(response: httpx.Response, context: str) -> ProviderError:
        status = response.status_code
        code, log_id, detail = _error_details(response)
        error = ProviderError(
            f"Fintecture {context} failed" + (f": {detail}" if detail else ""),
            http_status=status,
            code=code or _STATUS_NAMES.get(status, f"http_{status}"),
            log_id=log_id,
            retryable=status in RETRYABLE_STATUSES,
        )
        log.warning("fintecture.error", context=context, http_status=status, code=error.code, log_id=log_id)
        return error


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
