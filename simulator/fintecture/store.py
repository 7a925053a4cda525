"""Fintecture's in-memory state: access tokens and sessions (payments, payouts, refunds).

Every mutation here is synchronous (no `await` inside), so each one is atomic on the event loop;
no lock is needed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from simulator.fintecture.sessions import REFUND, Session


@dataclass(frozen=True)
class AccessToken:
    value: str
    app_id: str
    expires_at: datetime


class Store:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self._by_connect_id: dict[str, str] = {}
        self._tokens: dict[str, AccessToken] = {}

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

    def reset(self) -> None:
        self.sessions.clear()
        self._by_connect_id.clear()
        self._tokens.clear()
