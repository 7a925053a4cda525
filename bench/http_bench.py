"""Side-by-side throughput of the service's hot paths, in one run, on 127.0.0.1 only.

Starts the service (`checkout serve`, workers off so only ingestion is measured) in a subprocess on
a scratch database, then sends a bounded number of requests per scenario at a fixed concurrency:

  healthz   GET /healthz                         the framework floor, no database
  products  GET /products                        one indexed SELECT through the ORM
  webhook   POST /webhook (signed, unique ids)   RSA-OAEP decrypt + digest + inbox INSERT + commit
  orders    POST /orders                         catalog pricing, 3 INSERTs + commit

and prints requests/s, p50/p99 latency and each scenario's throughput as a ratio of `healthz`.
Absolute numbers vary between machines; the ratios are the result.

    .venv/bin/pip install -e '.[dev]'
    .venv/bin/python bench/http_bench.py [--requests 3000] [--concurrency 32]

Uses DATABASE_URL's server when set (a scratch database is created and dropped), else an
embedded PostgreSQL under .data/bench-pg.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import normalise_database_url  # noqa: E402
from app.devdb import start_embedded_postgres, with_database  # noqa: E402
from app.providers.fintecture.signing import generate_key_pair_pem  # noqa: E402
from tests.support.fintecture import build_delivery, public_key_from_pem  # noqa: E402

ADMIN_KEY = secrets.token_urlsafe(32)
APP_ID = "bench-app"
MAX_SECONDS_PER_SCENARIO = 60


def signed_webhook(public_pem: bytes) -> Callable[[], tuple[bytes, dict[str, str]]]:
    """A fresh, authentic delivery per call (unique X-Request-ID, current Date), as the provider
    sends it; built by the same contract helper the tests use."""
    key = public_key_from_pem(public_pem)

    def make() -> tuple[bytes, dict[str, str]]:
        body = f"session_id={uuid.uuid4().hex}&status=payment_created&transfer_state=completed".encode()
        headers = build_delivery(
            key, body, date=datetime.now(UTC), request_id=str(uuid.uuid4()), key_id=APP_ID
        )
        return body, headers

    return make


async def run_scenario(name: str, send: Callable[[], Any], total: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    remaining = total
    deadline = time.monotonic() + MAX_SECONDS_PER_SCENARIO

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            start = time.perf_counter()
            status = await send()
            latencies.append(time.perf_counter() - start)
            if status >= 400:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "name": name,
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def scratch_database(server_url: str, name: str, drop: bool = False) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    conn = await asyncpg.connect(
        user=url.username, host=url.query.get("host") or url.host, port=url.port, database="postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def main(total: int, concurrency: int) -> None:
    server = None
    configured = os.environ.get("DATABASE_URL")
    if configured:
        server_url = normalise_database_url(configured)
    else:
        server_url, server = start_embedded_postgres(ROOT / ".data" / "bench-pg")
    db_name = f"checkout_bench_{secrets.token_hex(3)}"
    await scratch_database(server_url, db_name)
    database_url = with_database(server_url, db_name)
    private_pem, public_pem = generate_key_pair_pem()
    port = 18000 + secrets.randbelow(1000)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ADMIN_API_KEY": ADMIN_KEY,
        "FINTECTURE_APP_ID": APP_ID,
        "FINTECTURE_APP_SECRET": "bench-secret",
        "FINTECTURE_PRIVATE_KEY": private_pem.decode(),
        "FINTECTURE_API_URL": "http://127.0.0.1:9",  # never called: workers are off
        "WORKERS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        # Every request comes from one loopback client here: the per-client limits would refuse it.
        "RATE_LIMIT_ENABLED": "false",
    }
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
        [sys.executable, "-m", "app.cli", "serve", "--migrate", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # aiohttp as the load generator: on two cores the client must cost less than the server.
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(base, connector=connector) as client:

            async def call(method: str, path: str, **kwargs: Any) -> int:
                async with client.request(method, path, **kwargs) as response:
                    await response.read()
                    return response.status

            for _ in range(300):
                try:
                    if await call("GET", "/readyz") == 200:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            product = {"name": "Bench item", "description": "", "unit_amount": 1999, "currency": "EUR"}
            assert await call("PUT", "/products/BENCH-1", json=product, headers=admin) in (200, 201)
            webhook = signed_webhook(public_pem)
            order = {
                "currency": "EUR",
                "items": [{"sku": "BENCH-1", "quantity": 2}],
                "customer": {"name": "Bench", "email": "bench@example.com"},
            }

            async def post_webhook() -> int:
                body, headers = webhook()
                return await call("POST", "/webhook", data=body, headers=headers)

            scenarios: list[tuple[str, Callable[[], Any]]] = [
                ("healthz", lambda: call("GET", "/healthz")),
                ("products", lambda: call("GET", "/products")),
                ("webhook", post_webhook),
                ("orders", lambda: call("POST", "/orders", json=order)),
            ]
            await run_scenario("warm-up", lambda: call("GET", "/products"), 200, concurrency)
            results = [await run_scenario(n, s, total, concurrency) for n, s in scenarios]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        await scratch_database(server_url, db_name, drop=True)
        del server

    floor = results[0]["rps"]
    print(f"{total} requests per scenario, concurrency {concurrency}, 1 server process, loopback\n")
    print(f"{'scenario':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs healthz':>11}")
    for r in results:
        print(
            f"{r['name']:<10} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['errors']:>7} {r['rps'] / floor:>10.2f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="per scenario (bounded)")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(min(args.requests, 20000), min(args.concurrency, 256)))
