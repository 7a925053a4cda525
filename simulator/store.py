"""The log of provider API requests the simulator received (`GET /_sim/requests`).

Every provider's API calls go through `simulator.guard.api_gate`, which records them here with who
called, how the call was signed and how it was answered. Credentials are masked. Mutations are
synchronous (no `await` inside), so each one is atomic on the event loop.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simulator.clock import iso


@dataclass
class RecordedRequest:
    id: int
    at: datetime
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str
    provider: str | None = None
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
            "provider": self.provider,
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


# A form field (Fintecture's token call) or a JSON member (Powens's) holding a client secret.
_FORM_SECRET = re.compile(r"(client_secret=)[^&]*")
_JSON_SECRET = re.compile(r'("client_secret"\s*:\s*")(?:[^"\\]|\\.)*')


def _masked(name: str, value: str) -> str:
    """Keep enough of a credential to tell which one was sent, not enough to reuse it."""
    if name.lower() != "authorization":
        return value
    scheme, _, credential = value.partition(" ")
    return f"{scheme} …{credential[-4:]}" if credential else "…"


def masked_body(body: bytes) -> str:
    text = body[:16_384].decode("utf-8", errors="replace")
    return _JSON_SECRET.sub(r"\1…", _FORM_SECRET.sub(r"\1…", text))


class RequestLog:
    def __init__(self, max_recorded: int) -> None:
        self.entries: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._seq = 0

    def record(
        self,
        *,
        at: datetime,
        provider: str,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> RecordedRequest:
        self._seq += 1
        entry = RecordedRequest(
            id=self._seq,
            at=at,
            provider=provider,
            method=method,
            path=path,
            query=query,
            headers={name: _masked(name, value) for name, value in headers.items()},
            body=masked_body(body),
        )
        self.entries.append(entry)
        return entry

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.entries)

    def reset(self) -> None:
        self.entries.clear()
