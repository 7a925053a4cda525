"""CPU per provider call: httpx's own connection pool against the service's client (httpx's API on
aiohttp's pool, app/providers/http.py), side by side in one run, on 127.0.0.1 only.

Starts a minimal HTTP server (uvicorn, 2 processes) answering a connect-sized JSON body, then
sends `--requests` POSTs at each `--concurrency` through each client, alternating, and prints the
client process's CPU (user + system) per request. The server is stopped by its PID at the end.

    .venv/bin/python bench/provider_client.py [--requests 6000] [--concurrency 1,8,32] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.providers.http import provider_http_client  # noqa: E402

_SERVER = """
import json
BODY = json.dumps({"meta": {"session_id": "s" * 32, "url": "https://pay.example/" + "x" * 100}}).encode()

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
"""

_REQUEST_BODY = json.dumps({"data": {"attributes": {"amount": "273.50", "currency": "EUR"}}}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_for(kind: str) -> httpx.AsyncClient:
    if kind == "httpx pool":  # what the service used before
        return httpx.AsyncClient(
            timeout=10, limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
    return provider_http_client(10)


async def measure(kind: str, url: str, requests: int, concurrency: int) -> float:
    """Client CPU in microseconds per request (after a warm-up that opens the connections)."""
    async with client_for(kind) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                response = await client.post(
                    url, content=_REQUEST_BODY, headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()
                response.json()

        await asyncio.gather(*(one() for _ in range(min(500, requests))))
        cpu = time.process_time()
        await asyncio.gather(*(one() for _ in range(requests)))
        return (time.process_time() - cpu) / requests * 1e6


async def main(args: argparse.Namespace, url: str) -> None:
    kinds = ("httpx pool", "service client")
    for concurrency in args.concurrency:
        results: dict[str, list[float]] = {kind: [] for kind in kinds}
        for round_ in range(args.repeat):
            for kind in kinds if round_ % 2 == 0 else reversed(kinds):
                results[kind].append(await measure(kind, url, args.requests, concurrency))
        cells = [f"{kind} {min(values):.0f}-{max(values):.0f} us/req" for kind, values in results.items()]
        ratio = min(results["httpx pool"]) / min(results["service client"])
        print(f"concurrency {concurrency:>3}: " + ", ".join(cells) + f"; {ratio:.1f}x less CPU", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument(
        "--concurrency", type=lambda text: [int(n) for n in text.split(",")], default=[1, 8, 32]
    )
    parser.add_argument("--repeat", type=int, default=2)
    parsed = parser.parse_args()
    parsed.requests = max(100, min(parsed.requests, 50_000))
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        Path(work, "echo_server.py").write_text(_SERVER)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                work,
                "echo_server:app",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                "2",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit("the local server did not start")
                    time.sleep(0.2)
            print(f"client CPU per POST, {parsed.requests} requests per run, pid {os.getpid()}", flush=True)
            asyncio.run(main(parsed, f"http://127.0.0.1:{port}/pis/v2/connect?state=abc"))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
