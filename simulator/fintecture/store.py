"""In-memory state: access tokens, sessions and the log of received API requests.

Every mutation here is synchronous (no `await` inside), so each one is atomic on the event loop;
no lock is needed.
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from simulator.clock import iso
from simulator.fintecture.sessions import REFUND, Session


@dataclass(frozen=True)
class AccessToken:
    value: str
    app_id: str
    expires_at: datetime


@dataclass
class RecordedRequest:
    id: int
    at: datetime
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str
    app_id: str | None = None
    signed: bool = False
    verified: bool = False
    status_code: int | None = None
    error_code: str | None = None
    fault: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "app_id": self.app_id,
            "signed": self.signed,
            "verified": self.verified,
            "status_code": self.status_code,
            "error_code": self.error_code,
            "fault": self.fault,
        }


_FORM_SECRET = re.compile(r"(client_secret=)[^&]*")


def _masked(name: str, value: str) -> str:
    """Keep enough of a credential to tell which one was sent, not enough to reuse it."""
    if name.lower() != "authorization":
        return value
    scheme, _, credential = value.partition(" ")
    return f"{scheme} …{credential[-4:]}" if credential else "…"


class Store:
    def __init__(self, max_recorded: int) -> None:
        self._max_recorded = max_recorded
        self.sessions: dict[str, Session] = {}
        self._by_connect_id: dict[str, str] = {}
        self._tokens: dict[str, AccessToken] = {}
        self.requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._request_seq = 0

    # Tokens
    def issue_token(self, app_id: str, now: datetime, ttl_seconds: int) -> AccessToken:
        token = AccessToken(secrets.token_urlsafe(32), app_id, now + timedelta(seconds=ttl_seconds))
        self._tokens[token.value] = token
        return token

    def token(self, value: str) -> AccessToken | None:
        return self._tokens.get(value)

    # Sessions
    def add(self, session: Session) -> None:
        self.sessions[session.session_id] = session
        if session.connect_id:
            self._by_connect_id[session.connect_id] = session.session_id

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def get_for_app(self, session_id: str, app_id: str) -> Session | None:
        session = self.sessions.get(session_id)
        return session if session is not None and session.app_id == app_id else None

    def by_connect_id(self, connect_id: str) -> Session | None:
        session_id = self._by_connect_id.get(connect_id)
        return self.sessions.get(session_id) if session_id else None

    def of_app(self, app_id: str) -> list[Session]:
        return [session for session in self.sessions.values() if session.app_id == app_id]

    def refunds_of(self, session_id: str) -> list[Session]:
        return [
            session
            for session in self.sessions.values()
            if session.type == REFUND and session.refunded_session_id == session_id
        ]

    def refunded_total(self, session_id: str) -> Decimal:
        """Cancelled refunds do not count (contract §9)."""
        return sum(
            (
                refund.decimal_amount
                for refund in self.refunds_of(session_id)
                if refund.status != "payment_cancelled"
            ),
            Decimal(0),
        )

    # Request log
    def record_request(
        self, *, at: datetime, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> RecordedRequest:
        self._request_seq += 1
        entry = RecordedRequest(
            id=self._request_seq,
            at=at,
            method=method,
            path=path,
            query=query,
            headers={name: _masked(name, value) for name, value in headers.items()},
            body=_FORM_SECRET.sub(r"\1…", body[:16_384].decode("utf-8", errors="replace")),
        )
        self.requests.append(entry)
        return entry

    def reset(self) -> None:
        self.sessions.clear()
        self._by_connect_id.clear()
        self._tokens.clear()
        self.requests.clear()
