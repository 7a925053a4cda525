"""How fast one service process applies a burst of webhooks when the provider is slow, side by side
with the one-at-a-time inbox worker, in one run, on 127.0.0.1 only.

Each run starts, on a scratch database, the provider simulator and ONE service process (`checkout
serve`, workers on, sweeper parked at 3600 s so only the inbox worker applies anything):

  1. N orders and N payment sessions are opened through the service's API;
  2. at the simulator, webhooks are dropped and every session is driven to paid
     (`payment_created` / `completed`), then every payment read is slowed to `--latency` seconds;
  3. the burst: N signed deliveries, one per session, POSTed to /webhook (32 connections).

The clock starts at the first POST and stops when the database shows every inbox row processed and
all N orders paid (polled every 50 ms). Runs alternate INBOX_CONCURRENCY=<n> (A) and
INBOX_CONCURRENCY=1 (B, the old one-at-a-time worker) as A B B A ..., each on a fresh database,
simulator and service process. B needs about N x latency seconds, so `--baseline-events` may run it
on fewer events; its time is then extrapolated per event to N and labelled as such.

Per run: ingestion time (every POST answered), time to fully applied, events/s, orders paid, non-2xx
answers, provider payment reads and inbox retries during the burst, warning/error log lines of the
service, and the CPU seconds the service and the simulator spent during the burst (with the whole
machine's busy share: on a shared machine, read the times next to it). The commit measured is
printed; the service runs the code of the checkout this file is in.

    .venv/bin/pip install -e '.[dev]'
    .venv/bin/python bench/inbox_burst.py [--events 500] [--latency 0.2] [--concurrency 16]
                                          [--repeat 2] [--baseline-events 100]

Uses DATABASE_URL's server when set (a scratch database is created and dropped per run), else an
embedded PostgreSQL under .data/bench-pg.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
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
CLIENT_CONCURRENCY = 32
POLL_SECONDS = 0.05
START_SECONDS = 60  # a process must answer within this
SETUP_SECONDS = 180  # orders, sessions and simulator driving, per run
MAX_WAIT_SECONDS = 300  # the burst must be applied within this (or 10x the one-at-a-time estimate)
PAYMENTS_PATH = "/pis/v2/payments"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def pg_connect(server_url: str, database: str) -> asyncpg.Connection:
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    return await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.query.get("host") or url.host,
        port=url.port,
        database=database,
    )


async def scratch_database(server_url: str, name: str, drop: bool = False) -> None:
    conn = await pg_connect(server_url, "postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def bounded(
    items: Sequence[Any], work: Callable[[Any], Awaitable[None]], concurrency: int, seconds: float
) -> None:
    """`work(item)` for every item, at most `concurrency` at once, within `seconds`."""
    queue = list(reversed(items))
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while queue and time.monotonic() < deadline:
            await work(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if queue:
        raise RuntimeError(f"{len(queue)} of {len(items)} items left after {seconds:.0f}s")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (Linux /proc/stat; NaN elsewhere)."""
    try:
        values = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return float("nan"), float("nan")
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def simulator_config(path: Path, public_pem: bytes, sim_url: str, svc_url: str, app_secret: str) -> None:
    """The simulator's configuration: one merchant application, ours, sending webhooks to the service."""
    config = {
        "public_url": sim_url,
        "pending_settle_seconds": 86400,
        "applications": [
            {
                "app_id": APP_ID,
                "app_secret": app_secret,
                "public_key_pem": public_pem.decode(),
                "redirect_uris": [f"{svc_url}/callback"],
                "webhook_url": f"{svc_url}/webhook",
                "mode": "lenient",
                "name": "Bench Shop",
            }
        ],
    }
    path.write_text(json.dumps(config))


def log_tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    interesting = [line for line in text if '"level"' in line or "Error" in line or "Traceback" in line]
    return "\n".join((interesting or text)[-lines:])


async def run_once(
    server_url: str,
    keys: tuple[bytes, bytes],
    *,
    label: str,
    events: int,
    latency: float,
    concurrency: int,
) -> dict[str, Any]:
    private_pem, public_pem = keys
    db_name = f"checkout_inbox_{secrets.token_hex(3)}"
    await scratch_database(server_url, db_name)
    sim_port, svc_port = free_port(), free_port()
    sim_url, svc_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{svc_port}"
    app_secret = secrets.token_urlsafe(24)
    simulator: subprocess.Popen[bytes] | None = None
    service: subprocess.Popen[bytes] | None = None
    poller: asyncpg.Connection | None = None
    with tempfile.TemporaryDirectory(prefix="inbox-burst-") as tmp:
        work = Path(tmp)
        config_path = work / "simulator.json"
        simulator_config(config_path, public_pem, sim_url, svc_url, app_secret)
        sim_log, svc_log = work / "simulator.log", work / "service.log"
        env = {
            **os.environ,
            "DATABASE_URL": with_database(server_url, db_name),
            "ADMIN_API_KEY": ADMIN_KEY,
            "PUBLIC_URL": svc_url,
            "STOREFRONT_URL": f"{svc_url}/",
            "FINTECTURE_APP_ID": APP_ID,
            "FINTECTURE_APP_SECRET": app_secret,
            "FINTECTURE_PRIVATE_KEY": private_pem.decode(),
            "FINTECTURE_API_URL": sim_url,
            "WORKERS_ENABLED": "true",
            "INBOX_CONCURRENCY": str(concurrency),
            "SWEEPER_INTERVAL_SECONDS": "3600",
            "LOG_LEVEL": "WARNING",
            # Every request comes from one loopback client here: the per-client limits would refuse it.
            "RATE_LIMIT_ENABLED": "false",
        }
        try:
            with sim_log.open("wb") as out:
                simulator = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
                    [
                        sys.executable,
                        "-m",
                        "app.cli",
                        "simulator",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(sim_port),
                        "--config",
                        str(config_path),
                    ],
                    cwd=ROOT,
                    env={**os.environ},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            with svc_log.open("wb") as out:
                service = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
                    [
                        sys.executable,
                        "-m",
                        "app.cli",
                        "serve",
                        "--migrate",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(svc_port),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            timeout = aiohttp.ClientTimeout(total=60)
            connector = aiohttp.TCPConnector(limit=CLIENT_CONCURRENCY * 2)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

                async def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
                    async with client.request(method, url, **kwargs) as response:
                        body = await response.read()
                        try:
                            return response.status, json.loads(body) if body else None
                        except ValueError:
                            return response.status, body[:200]

                async def wait_ready(
                    name: str, url: str, process: subprocess.Popen[bytes], log: Path
                ) -> None:
                    deadline = time.monotonic() + START_SECONDS
                    while time.monotonic() < deadline:
                        if process.poll() is not None:
                            raise RuntimeError(f"{name} exited ({process.returncode}):\n{log_tail(log)}")
                        try:
                            if (await call("GET", url))[0] == 200:
                                return
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.1)
                    raise RuntimeError(f"{name} not ready after {START_SECONDS}s:\n{log_tail(log)}")

                await wait_ready("simulator", f"{sim_url}/_sim/clock", simulator, sim_log)
                await wait_ready("service", f"{svc_url}/readyz", service, svc_log)

                # 1. N orders, N payment sessions, through the service's API.
                admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
                product = {"name": "Bench item", "description": "", "unit_amount": 1999, "currency": "EUR"}
                status, body = await call("PUT", f"{svc_url}/products/BENCH-1", json=product, headers=admin)
                assert status in (200, 201), (status, body)
                order = {
                    "currency": "EUR",
                    "items": [{"sku": "BENCH-1", "quantity": 1}],
                    "customer": {"name": "Bench", "email": "bench@example.com"},
                }
                provider_ids: list[str] = []

                async def open_one(_: int) -> None:
                    status, created = await call("POST", f"{svc_url}/orders", json=order)
                    if status != 201:
                        raise RuntimeError(f"POST /orders answered {status}: {created}")
                    status, opened = await call(
                        "POST",
                        f"{svc_url}/orders/{created['id']}/payment-session",
                        json={},
                        headers={"Authorization": f"Bearer {created['access_token']}"},
                    )
                    if status != 201:
                        raise RuntimeError(f"POST payment-session answered {status}: {opened}")
                    provider_ids.append(opened["provider_session_id"])

                setup_started = time.perf_counter()
                await bounded(range(events), open_one, CLIENT_CONCURRENCY, SETUP_SECONDS)

                # 2. Paid at the provider, its own webhooks dropped; then every payment read is slow.
                status, body = await call(
                    "POST", f"{sim_url}/_sim/faults", json={"webhook_drop": {"count": events * 10 + 1000}}
                )
                assert status == 200, (status, body)

                async def drive(session_id: str) -> None:
                    status, answer = await call(
                        "POST",
                        f"{sim_url}/_sim/sessions/{session_id}/status",
                        json={"status": "payment_created", "transfer_state": "completed"},
                    )
                    if status != 200:
                        raise RuntimeError(f"simulator status change answered {status}: {answer}")

                await bounded(provider_ids, drive, CLIENT_CONCURRENCY, SETUP_SECONDS)
                latency_fault = {"api_latency": {"seconds": latency, "path_prefix": PAYMENTS_PATH}}
                status, body = await call("POST", f"{sim_url}/_sim/faults", json=latency_fault)
                assert status == 200, (status, body)
                setup_seconds = time.perf_counter() - setup_started

                poller = await pg_connect(server_url, db_name)
                before = await poller.fetchrow(
                    "SELECT (SELECT count(*) FROM provider_events) AS events,"
                    " (SELECT count(*) FROM orders WHERE status = 'paid') AS paid"
                )
                if before["events"] or before["paid"]:
                    raise RuntimeError(
                        f"before the burst: {dict(before)} (expected no inbox rows, no paid orders)"
                    )
                _, reads = await call(
                    "GET", f"{sim_url}/_sim/requests", params={"path_prefix": PAYMENTS_PATH}
                )
                reads_before = sum(1 for r in reads["requests"] if r["method"] == "GET")

                # 3. The burst: one authentic delivery per session, built before the clock starts.
                key = public_key_from_pem(public_pem)
                deliveries = []
                for session_id in provider_ids:
                    body_bytes = (
                        f"session_id={session_id}&status=payment_created&transfer_state=completed".encode()
                    )
                    headers = build_delivery(
                        key, body_bytes, date=datetime.now(UTC), request_id=str(uuid.uuid4()), key_id=APP_ID
                    )
                    deliveries.append((body_bytes, headers))
                failures: list[str] = []

                async def post(delivery: tuple[bytes, dict[str, str]]) -> None:
                    try:
                        status, answer = await call(
                            "POST", f"{svc_url}/webhook", data=delivery[0], headers=delivery[1]
                        )
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        failures.append(f"{type(exc).__name__}: {exc}")
                        return
                    if not 200 <= status < 300:
                        failures.append(f"{status}: {answer}")

                wait_limit = min(max(60.0, 10 * events * latency), MAX_WAIT_SECONDS)
                done = asyncio.Event()
                progress: dict[str, Any] = {}

                async def watch(started: float) -> None:
                    deadline = started + wait_limit
                    while time.perf_counter() < deadline:
                        row = await poller.fetchrow(
                            "SELECT count(*) AS events,"
                            " count(*) FILTER (WHERE processed_at IS NULL) AS unprocessed,"
                            " (SELECT count(*) FROM orders WHERE status = 'paid') AS paid"
                            " FROM provider_events"
                        )
                        progress.update(row)
                        if row["events"] == events and row["unprocessed"] == 0 and row["paid"] == events:
                            progress["applied_at"] = time.perf_counter()
                            done.set()
                            return
                        await asyncio.sleep(POLL_SECONDS)

                cpu_before = cpu_seconds(service.pid), cpu_seconds(simulator.pid), host_times()
                t0 = time.perf_counter()
                watcher = asyncio.create_task(watch(t0))
                await bounded(deliveries, post, CLIENT_CONCURRENCY, wait_limit)
                ingested = time.perf_counter() - t0
                await watcher
                applied = progress["applied_at"] - t0 if done.is_set() else None
                host_after = host_times()
                service_cpu = cpu_seconds(service.pid) - cpu_before[0]
                simulator_cpu = cpu_seconds(simulator.pid) - cpu_before[1]
                host_busy = (host_after[0] - cpu_before[2][0]) / max(host_after[1] - cpu_before[2][1], 1.0)

                stats = await poller.fetchrow(
                    "SELECT count(*) AS events,"
                    " count(*) FILTER (WHERE processed_at IS NULL) AS unprocessed,"
                    " count(*) FILTER (WHERE outcome = 'applied') AS applied,"
                    " count(*) FILTER (WHERE outcome = 'gave_up') AS gave_up,"
                    " coalesce(sum(greatest(attempts - 1, 0)), 0) AS retries,"
                    " (SELECT count(*) FROM orders WHERE status = 'paid') AS paid"
                    " FROM provider_events"
                )
                _, reads = await call(
                    "GET", f"{sim_url}/_sim/requests", params={"path_prefix": PAYMENTS_PATH}
                )
                provider_reads = sum(1 for r in reads["requests"] if r["method"] == "GET") - reads_before
                errors = ""
                if applied is None:
                    errors = (
                        f"not applied within {wait_limit:.0f}s: {dict(stats)}\n"
                        f"service log (last lines):\n{log_tail(svc_log)}"
                    )
                elif service.poll() is not None:
                    errors = f"service exited ({service.returncode}):\n{log_tail(svc_log)}"
                warnings = [
                    line for line in svc_log.read_text(errors="replace").splitlines() if '"level"' in line
                ]
        finally:
            if poller is not None:
                await poller.close()
            stop(service)
            stop(simulator)
            await scratch_database(server_url, db_name, drop=True)

    return {
        "label": label,
        "concurrency": concurrency,
        "events": events,
        "setup_s": setup_seconds,
        "ingest_s": ingested,
        "applied_s": applied,
        "paid": stats["paid"],
        "non_2xx": len(failures),
        "failures": failures[:5],
        "provider_reads": provider_reads,
        "retries": stats["retries"],
        "gave_up": stats["gave_up"],
        "unprocessed": stats["unprocessed"],
        "log_lines": warnings[-10:],
        "log_count": len(warnings),
        "errors": errors,
        "service_cpu": service_cpu,
        "simulator_cpu": simulator_cpu,
        "host_busy": host_busy,
    }


def code_version() -> str:
    """The commit measured, and whether the service's code differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "simulator", "migrations"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"{head} + uncommitted changes in app/, simulator/ or migrations/" if dirty else head


def schedule(repeat: int) -> list[str]:
    """A B B A A B ...: each arm goes first as often as the other."""
    order: list[str] = []
    for i in range(repeat):
        order += ["A", "B"] if i % 2 == 0 else ["B", "A"]
    return order


async def main(events: int, latency: float, concurrency: int, repeat: int, baseline_events: int) -> int:
    server = None
    configured = os.environ.get("DATABASE_URL")
    if configured:
        server_url = normalise_database_url(configured)
    else:
        server_url, server = start_embedded_postgres(ROOT / ".data" / "bench-pg")
    keys = generate_key_pair_pem()
    arms = {"A": (concurrency, events), "B": (1, baseline_events)}
    results: list[dict[str, Any]] = []
    try:
        for n, arm in enumerate(schedule(repeat), start=1):
            arm_concurrency, arm_events = arms[arm]
            label = f"{arm}{sum(1 for r in results if r['label'][0] == arm) + 1}"
            print(
                f"run {n}: {label} INBOX_CONCURRENCY={arm_concurrency}, {arm_events} events ...", flush=True
            )
            result = await run_once(
                server_url, keys, label=label, events=arm_events, latency=latency, concurrency=arm_concurrency
            )
            results.append(result)
            if result["errors"]:
                print(result["errors"], flush=True)
    finally:
        del server

    print(
        f"\n{events} webhooks for {events} payment sessions (one-at-a-time arm: {baseline_events}), "
        f"provider payment read {latency * 1000:.0f} ms, 1 service process, {CLIENT_CONCURRENCY} client "
        f"connections, loopback; code {code_version()}\n"
    )
    header = (
        "run",
        "INBOX_CONC",
        "events",
        "setup s",
        "ingest s",
        "applied s",
        "events/s",
        "paid",
        "non-2xx",
        "reads",
        "retries",
        "log",
        "svc CPU s",
        "CPU ms/ev",
        "sim CPU s",
        "host busy",
    )
    print(f"{header[0]:<4} " + " ".join(f"{h:>{max(len(h), 6)}}" for h in header[1:]))
    for r in results:
        applied = f"{r['applied_s']:.2f}" if r["applied_s"] is not None else "TIMEOUT"
        rate = f"{r['events'] / r['applied_s']:.1f}" if r["applied_s"] else "-"
        cells = (
            r["concurrency"],
            r["events"],
            f"{r['setup_s']:.1f}",
            f"{r['ingest_s']:.2f}",
            applied,
            rate,
            r["paid"],
            r["non_2xx"],
            r["provider_reads"],
            r["retries"],
            r["log_count"],
            f"{r['service_cpu']:.1f}",
            f"{r['service_cpu'] / r['events'] * 1000:.0f}",
            f"{r['simulator_cpu']:.1f}",
            f"{r['host_busy']:.0%}",
        )
        print(
            f"{r['label']:<4} "
            + " ".join(f"{c!s:>{max(len(h), 6)}}" for h, c in zip(header[1:], cells, strict=True))
        )
    for r in results:
        for failure in r["failures"]:
            print(f"  {r['label']} non-2xx: {failure}")
        for line in r["log_lines"]:
            print(f"  {r['label']} log: {line[:300]}")

    a = [r["applied_s"] for r in results if r["label"][0] == "A" and r["applied_s"] is not None]
    b = [r["applied_s"] / r["events"] for r in results if r["label"][0] == "B" and r["applied_s"] is not None]
    ok = len(a) == repeat and len(b) == repeat and all(not r["errors"] and not r["non_2xx"] for r in results)
    if a and b:
        a_median, b_per_event = statistics.median(a), statistics.median(b)
        b_full = b_per_event * events
        scaled = ", extrapolated per event" if baseline_events != events else ""
        print(
            f"\nINBOX_CONCURRENCY={concurrency}: {events} events applied in {a_median:.2f} s "
            f"(median of {len(a)})"
        )
        print(
            f"INBOX_CONCURRENCY=1: {b_per_event * 1000:.0f} ms per event (median of {len(b)}, measured on "
            f"{baseline_events} events) -> {b_full:.1f} s for {events} events{scaled}"
        )
        print(
            f"speed-up: {b_full / a_median:.1f}x "
            f"(one-at-a-time floor: {events} x {latency:g} s = {events * latency:.0f} s)"
        )
        cpu = {
            arm: statistics.median(r["service_cpu"] / r["events"] for r in results if r["label"][0] == arm)
            for arm in "AB"
        }
        print(
            f"service CPU per event (ingest + apply): {cpu['A'] * 1000:.0f} ms (A), "
            f"{cpu['B'] * 1000:.0f} ms (B) -> {events} events need "
            f"{cpu['A'] * events:.1f} s of one core in one process"
        )
        if events == 500 and latency == 0.2:
            verdict = "met" if max(a) <= 15.0 else "NOT met"
            print(
                f"target: 500 events applied in <= 15 s by one process: {verdict} "
                f"(slowest run {max(a):.2f} s)"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500, help="webhooks in the burst (bounded)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per provider payment read")
    parser.add_argument("--concurrency", type=int, default=16, help="INBOX_CONCURRENCY of the A arm")
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs, alternating A B / B A")
    parser.add_argument(
        "--baseline-events",
        type=int,
        default=None,
        help="events for the INBOX_CONCURRENCY=1 arm (default: --events); its time is extrapolated per event",
    )
    args = parser.parse_args()
    total = max(1, min(args.events, 5000))
    baseline = max(1, min(args.baseline_events or total, total))
    sys.exit(
        asyncio.run(
            main(
                total,
                max(0.001, min(args.latency, 5.0)),
                max(1, min(args.concurrency, 256)),
                max(1, min(args.repeat, 6)),
                baseline,
            )
        )
    )
