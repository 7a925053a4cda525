"""Driving the app as an ASGI app, for what no HTTP client can send: a client that hangs up."""

from __future__ import annotations

from typing import Any


async def post_then_hang_up(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], first_piece: bytes
) -> list[dict[str, Any]]:
    """POST to `path` a body of which only `first_piece` arrives before the client disconnects;
    the messages the app sent back."""
    messages = iter(
        [
            {"type": "http.request", "body": first_piece, "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"checkout.test"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("checkout.test", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return sent
