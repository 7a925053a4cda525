"""The console's session: the operator key exchanged for a signed cookie, a CSRF token bound to it,
and a throttle on failed logins.

- The cookie holds only a random CSRF token and its issue time, signed with HMAC-SHA256 (itsdangerous)
  under a key derived from ADMIN_API_KEY at start-up: rotating the operator key ends every session,
  and with no operator key set nothing signs or verifies (the console stays shut).
- It expires after SESSION_SECONDS (checked from the signed time, not only the browser's Max-Age).
  Logging out deletes it in the browser; a copy taken before stays valid until it expires.
- Flags: HttpOnly, SameSite=Strict, Path=/admin, and Secure whenever PUBLIC_URL is https (always
  so in production, which requires it); over plain http (127.0.0.1, the demo, tests) a Secure cookie
  would never be sent back, so it is left off there.
- Every state-changing request carries the CSRF token in its form and is refused (403, nothing
  written) when it does not match the session's, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.auth import is_admin
from app.config import Settings

COOKIE_NAME = "checkout_admin"
COOKIE_PATH = "/admin"
SESSION_SECONDS = 8 * 3600

# Failed logins per client: at most LOGIN_FAILURES within LOGIN_WINDOW_SECONDS, then 429.
LOGIN_FAILURES = 10
LOGIN_WINDOW_SECONDS = 300.0
_TRACKED_CLIENTS = 10_000  # the oldest are forgotten beyond this, so the table stays bounded


@dataclass(frozen=True)
class ConsoleSession:
    csrf_token: str


class ConsoleAuth:
    """Built once at start-up from the settings; holds the signing key (never logged)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        key = settings.admin_api_key.get_secret_value()
        self.enabled = bool(key)
        # A key of its own, so the cookie's signatures never double as anything keyed by the operator key.
        derived = hmac.new(
            key.encode("utf-8", "surrogatepass"), b"checkout admin console session", hashlib.sha256
        )
        self._serializer = URLSafeTimedSerializer(
            derived.hexdigest(), salt="admin-session", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.secure_cookie = urlsplit(settings.public_url).scheme == "https"
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def key_matches(self, presented: str) -> bool:
        return is_admin(presented, self._settings)

    def issue(self) -> tuple[str, ConsoleSession]:
        session = ConsoleSession(csrf_token=secrets.token_urlsafe(32))
        return self._serializer.dumps({"csrf": session.csrf_token}), session

    def read(self, cookie: str | None) -> ConsoleSession | None:
        if not self.enabled or not cookie or len(cookie) > 512:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # SignatureExpired included
            return None
        csrf = data.get("csrf") if isinstance(data, dict) else None
        return ConsoleSession(csrf_token=csrf) if isinstance(csrf, str) and csrf else None

    @staticmethod
    def csrf_matches(session: ConsoleSession, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(session.csrf_token.encode(), presented.encode("utf-8", "surrogatepass"))

    # --- failed-login throttle (per process) ------------------------------------------------------

    def login_retry_after(self, client: str, now: float | None = None) -> int | None:
        """Seconds before this client may try again, or None when it may now."""
        now = time.monotonic() if now is None else now
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - LOGIN_WINDOW_SECONDS:
            failures.popleft()
        if len(failures) < LOGIN_FAILURES:
            return None
        return max(1, int(failures[0] + LOGIN_WINDOW_SECONDS - now) + 1)

    def login_failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._failures.setdefault(client, deque(maxlen=LOGIN_FAILURES))
        failures.append(now)
        self._failures.move_to_end(client)
        while len(self._failures) > _TRACKED_CLIENTS:
            self._failures.popitem(last=False)

    def login_succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a console path only, never another site."""
    if (
        target
        and target.startswith(COOKIE_PATH + "/")
        and not target.startswith("//")
        and "\\" not in target
        and all(32 < ord(c) < 127 for c in target)
        and len(target) <= 500
    ):
        return target
    return COOKIE_PATH + "/orders"
