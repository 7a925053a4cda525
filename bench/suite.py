"""The side-by-side benchmark suite in one command: the service against the hand-written floors and
against the main the performance work started from, on 127.0.0.1 only, with a table per scenario.

Sides (each started once, with `--workers` processes, on free loopback ports, stopped by PID with its
child processes at the end, also on an error or Ctrl-C):

  project   `python -m app.cli serve --migrate --workers N` from this checkout, on a scratch database,
            with the provider simulator, a fresh RSA key, workers on (the inbox worker applies what
            the webhooks store; the sweeper parked at 3600 s on both sides; `--inbox-workers off`
            turns them off, to measure webhook intake alone), rate limits off (every
            request comes from one loopback client), LOG_LEVEL=WARNING (which also turns uvicorn's
            access log off);
  floor     floor_webhook.py / floor_orders.py, run from `--floor-dir` (never copied here) with this
            .venv's python: uvicorn --workers N --http httptools --loop uvloop --no-access-log
            --log-level warning, on a scratch database set up as the floor's README says;
  baseline  `--baseline-rev` checked out with `git worktree add` into a temporary directory, on its own
            scratch database migrated by its own migrations, with its own simulator, run as
            `uvicorn app.main:create_app --factory --workers N --no-access-log --log-level warning`
            with this .venv and PYTHONPATH=<worktree>. The worktree is removed at the end.

Scenarios (each run `wrk -t2 -c<connections> -d<duration>s --latency --timeout 10s`, sides alternating
A B B A ..., `--repeat` runs per side):

  webhook          project POST /webhook vs floor_webhook (req/s and p99, round by round), each run
                   on a fixture made just before it by the floor's make_webhook_fixture.py (project:
                   our key, our app id, ~200 payment sessions opened through the API; floor: --rows
                   100000), never wrapping; for the project also the inbox backlog (unprocessed
                   provider_events) at the end and 5 s later
  orders           POST /orders: project vs floor_orders vs baseline (orders.lua, product BENCH-1)
  healthz          GET /healthz: project vs baseline
  products         GET /products: project vs baseline
  order_read       GET /orders/{id} with the order's token (bench/order_read.lua): project vs baseline
  payment_session  POST /orders/{id}/payment-session, each on a fresh order made through the API
                   before the run (bench/payment_session.lua, never wrapping): project vs baseline,
                   with the simulator's CPU per request beside the service's, the ratio of the
                   service's own CPU per session (the simulator's share excluded), and the ratio of
                   the machine's time per session (cores x 1000 / req/s ms) less the simulator's CPU
  inbox_burst      bench/inbox_burst.py's run: 500 webhooks, one process, 200 ms provider reads;
                   the seconds until all are applied (after the other services are stopped)

Per run: req/s, p50, p99, statuses, socket errors, service CPU ms per request (user + system of the
server processes and their children, from /proc), the CPU of the private PostgreSQL's processes per
request (with --private-postgres), RSS per worker process after the run, and the load average. The
tables give each side's mean and range, and the ratios project/floor and project/baseline per pair
of runs taken in the same round, with their median and mean. Raw results go to bench/results/.
The exit status is 1 if any run had a socket error or an unexpected status.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/suite.py \\
        [--workers 2] [--duration 10] [--connections 64] [--repeat 3] [--baseline-rev e8cd50c] \\
        [--scenarios webhook,orders,healthz,products,order_read,payment_session,inbox_burst]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import inbox_burst  # noqa: E402
from inbox_burst import (  # noqa: E402
    APP_ID,
    bounded,
    code_version,
    free_port,
    log_tail,
    pg_connect,
    scratch_database,
    simulator_config,
)

from app.config import normalise_database_url  # noqa: E402
from app.devdb import with_database  # noqa: E402
from app.providers.fintecture.signing import generate_key_pair_pem  # noqa: E402

SCENARIOS = ("webhook", "orders", "healthz", "products", "order_read", "payment_session", "inbox_burst")
WRK = "/usr/bin/wrk"
WRK_THREADS = 2
ADMIN_KEY = secrets.token_urlsafe(32)
PRODUCT = {"name": "Bench item", "description": "", "unit_amount": 1999, "currency": "EUR"}
ORDER = {
    "currency": "EUR",
    "items": [{"sku": "BENCH-1", "quantity": 1}],
    "customer": {"name": "Bench", "email": "bench@example.com"},
}
FLOOR_ROWS = 100_000
WEBHOOK_SESSIONS = 200
READ_ORDERS = 200
CLIENT_CONCURRENCY = 32
START_SECONDS = 120  # a service must answer within this (the project migrates first)
STOP_SECONDS = 20  # then its processes are killed
SETUP_SECONDS = 300  # orders, sessions and fixtures, per step
BACKLOG_WAIT_SECONDS = 5
# Before the first payment-session run of a side, orders for this rate; later runs size from the
# fastest rate seen on that side, twice over (a run that ran out counts the orders it used up).
PAYMENT_FIRST_RATE = 800
MAX_PAYMENT_ORDERS = 40_000

# scenario -> (sides in order, expected status, what is measured)
PLAN: dict[str, tuple[tuple[str, ...], int, str]] = {
    "webhook": (("project", "floor"), 200, "POST /webhook, a fresh signed delivery per request"),
    "orders": (("project", "floor", "baseline"), 201, "POST /orders, one line of BENCH-1"),
    "healthz": (("project", "baseline"), 200, "GET /healthz"),
    "products": (("project", "baseline"), 200, "GET /products"),
    "order_read": (("project", "baseline"), 200, "GET /orders/{id} with its token"),
    "payment_session": (("project", "baseline"), 201, "POST /orders/{id}/payment-session, fresh orders"),
}


class SuiteError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------
# processes


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    simulator: Service | None = None
    database: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def tree(self) -> list[psutil.Process]:
        """The server process and every process below it (uvicorn's workers, multiprocessing's
        helpers)."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The processes that serve requests: uvicorn's spawned workers, or the server itself."""
        procs = self.tree()
        spawned = []
        for proc in procs[1:]:
            try:
                if any("spawn_main" in part for part in proc.cmdline()):
                    spawned.append(proc)
            except psutil.Error:
                continue
        return spawned or procs[:1]

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) so far, per live process of the tree."""
        return processes_cpu(self.tree())

    def rss_mb(self) -> list[float]:
        out = []
        for proc in self.workers():
            try:
                out.append(proc.memory_info().rss / 2**20)
            except psutil.Error:
                continue
        return out


def processes_cpu(procs: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds (user + system) so far, per process of `procs` still alive."""
    out = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        out[proc.pid] = times.user + times.system
    return out


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two snapshots; a process that appeared in between counts from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def stop_service(service: Service | None) -> None:
    """SIGTERM to the server (uvicorn stops its workers), then SIGKILL, by PID, to whatever of its
    tree is left."""
    if service is None:
        return
    procs = service.tree()
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.process.wait(timeout=STOP_SECONDS)
    _, alive = psutil.wait_procs(procs, timeout=2)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5)
    if service.process.poll() is None:
        service.process.kill()
        service.process.wait(timeout=5)
    stop_service(service.simulator)


def launch(name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path, url: str) -> Service:
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Service(name=name, url=url, process=process, log=log)


async def wait_ready(client: aiohttp.ClientSession, service: Service, path: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise SuiteError(
                f"{service.name} exited ({service.process.returncode}):\n{log_tail(service.log)}"
            )
        try:
            async with client.get(service.url + path) as response:
                await response.read()
                if response.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise SuiteError(f"{service.name} not ready after {START_SECONDS}s:\n{log_tail(service.log)}")


async def call(client: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with client.request(method, url, **kwargs) as response:
        body = await response.read()
        try:
            return response.status, json.loads(body) if body else None
        except ValueError:
            return response.status, body[:200]


def run_checked(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SuiteError(f"{' '.join(cmd[:4])} ... failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


PG_BIN = Path("/usr/lib/postgresql/15/bin")  # the same major version as the shared server


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_private_postgres() -> tuple[str, Path]:
    """A PostgreSQL 15 cluster of the suite's own, in a temporary directory, on a free loopback port,
    with room for every side's pool (a shared server's 100 connections are not enough for three
    sides of two processes each beside other work). Settings are initdb's defaults otherwise."""
    data = Path(tempfile.mkdtemp(prefix="bench-suite-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    run_checked(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data / "data"), "-U", "postgres", "--auth=trust"]),
        cwd=data,
        timeout=120,
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c max_connections=400"
    options += f" -c unix_socket_directories={data}"
    run_checked(
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data / "data"),
                "-l",
                str(data / "log"),
                "-w",
                "-t",
                "60",
                *("-o", options, "start"),
            ]
        ),
        cwd=data,
        timeout=90,
    )
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", data


def postmaster_pid(data: Path) -> int | None:
    """The private cluster's postmaster, from its pid file; None when it is not running."""
    try:
        return int((data / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def postgres_cpu(data: Path | None) -> dict[int, float]:
    """CPU seconds so far of the private cluster's processes (the postmaster, its backends, its
    writers and autovacuum), per process; empty without a private cluster. The sides run one at a
    time, so what the cluster spends during a run is that run's."""
    pid = None if data is None else postmaster_pid(data)
    if pid is None:
        return {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    return processes_cpu(procs)


def stop_private_postgres(data: Path | None) -> None:
    if data is None:
        return
    pid = postmaster_pid(data)
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(data / "data"), "-m", "fast", "-w", "-t", "30", "stop"]
        ),
        cwd=data,
        capture_output=True,
        timeout=60,
    )
    if pid is not None and psutil.pid_exists(pid):
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    shutil.rmtree(data, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# the sides


@dataclass
class Context:
    args: argparse.Namespace
    server_url: str
    work: Path
    floor_dir: Path
    client: aiohttp.ClientSession
    private_pem: bytes
    public_pem: bytes
    key_file: Path
    databases: list[str] = field(default_factory=list)
    services: dict[str, Service] = field(default_factory=dict)
    worktree: Path | None = None
    floor_db: str | None = None
    monitor: Any = None  # one connection to the server's postgres database, for pg_stat_activity
    private_pg: Path | None = None  # the private cluster's directory, whose CPU is measured per run

    async def connections(self, database: str | None) -> int | None:
        """Connections the side holds on its database (its pools, after a run)."""
        if database is None:
            return None
        if self.monitor is None:
            self.monitor = await pg_connect(self.server_url, "postgres")
        return int(
            await self.monitor.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database)
        )

    async def checkpoint(self) -> bool:
        """Write out what the previous runs left dirty, before the next run starts: PostgreSQL would
        otherwise flush it during some later run (a timed checkpoint comes 5 minutes after the last
        one), and stall that run's commits. False when the server refuses (not a superuser)."""
        if self.monitor is None:
            self.monitor = await pg_connect(self.server_url, "postgres")
        try:
            await self.monitor.execute("CHECKPOINT")
        except asyncpg.PostgresError:
            return False
        return True

    async def database(self, label: str) -> str:
        name = f"suite_{label}_{secrets.token_hex(3)}"
        await scratch_database(self.server_url, name)
        self.databases.append(name)
        return name


async def start_app_side(ctx: Context, side: str) -> Service:
    """The project (this checkout) or the baseline (the worktree), with a simulator of its own code."""
    code = ROOT if side == "project" else ctx.worktree
    assert code is not None
    db_name = await ctx.database(side)
    sim_port, svc_port = free_port(), free_port()
    sim_url, svc_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{svc_port}"
    app_secret = secrets.token_urlsafe(24)
    config_path = ctx.work / f"{side}-simulator.json"
    simulator_config(config_path, ctx.public_pem, sim_url, svc_url, app_secret)
    base_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if side == "baseline":
        base_env["PYTHONPATH"] = str(code)
    env = {
        **base_env,
        "DATABASE_URL": with_database(ctx.server_url, db_name),
        "ADMIN_API_KEY": ADMIN_KEY,
        "PUBLIC_URL": svc_url,
        "STOREFRONT_URL": f"{svc_url}/",
        "FINTECTURE_APP_ID": APP_ID,
        "FINTECTURE_APP_SECRET": app_secret,
        "FINTECTURE_PRIVATE_KEY": ctx.private_pem.decode(),
        "FINTECTURE_API_URL": sim_url,
        "WORKERS_ENABLED": "true" if ctx.args.inbox_workers == "on" or side == "baseline" else "false",
        # The sweeper is parked on both sides: otherwise it re-reads, every 30 s, each of the
        # thousands of sessions a run leaves open, and its provider calls land in the CPU per
        # request of whichever scenario runs then. The inbox worker stays on.
        "SWEEPER_INTERVAL_SECONDS": "3600",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_ENABLED": "false",
    }
    python = sys.executable
    simulator = launch(
        f"{side} simulator",
        [
            python,
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
        cwd=code,
        env=base_env,
        log=ctx.work / f"{side}-simulator.log",
        url=sim_url,
    )
    try:
        if side == "project":
            cmd = [
                python,
                "-m",
                "app.cli",
                "serve",
                "--migrate",
                "--host",
                "127.0.0.1",
                "--port",
                str(svc_port),
            ]
            cmd += ["--workers", str(ctx.args.workers)]
        else:
            # The baseline's `serve` had no --workers and logged every request: uvicorn directly.
            run_checked([python, "-m", "app.cli", "migrate"], cwd=code, env=env, timeout=120)
            cmd = [python, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1"]
            cmd += ["--port", str(svc_port), "--workers", str(ctx.args.workers)]
            cmd += ["--no-access-log", "--log-level", "warning"]
        service = launch(side, cmd, cwd=code, env=env, log=ctx.work / f"{side}.log", url=svc_url)
    except BaseException:
        stop_service(simulator)
        raise
    service.simulator, service.database = simulator, db_name
    ctx.services[side] = service
    await wait_ready(ctx.client, simulator, "/_sim/clock")
    await wait_ready(ctx.client, service, "/readyz")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    status, body = await call(ctx.client, "PUT", f"{svc_url}/products/BENCH-1", json=PRODUCT, headers=admin)
    if status not in (200, 201):
        raise SuiteError(f"{side}: PUT /products/BENCH-1 answered {status}: {body}")
    return service


async def start_floor(ctx: Context, which: str) -> Service:
    """floor_webhook or floor_orders, from the floor's folder, on the floors' scratch database."""
    if ctx.floor_db is None:
        db_name = ctx.floor_db = await ctx.database("floor")
        conn = await pg_connect(ctx.server_url, db_name)
        try:
            await conn.execute(
                "CREATE TABLE orders (id uuid PRIMARY KEY, status text NOT NULL, amount bigint NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now());"
                " INSERT INTO orders (id, status, amount, updated_at)"
                " SELECT md5(i::text)::uuid, 'created', (i % 100000) + 100, now()"
                f" FROM generate_series(1, {FLOOR_ROWS}) AS i;"
            )
            await conn.execute("VACUUM ANALYZE orders")
        finally:
            await conn.close()
    dsn = with_database(ctx.server_url, ctx.floor_db).replace("postgresql+asyncpg://", "postgresql://")
    env = {**os.environ, "PG_DSN": dsn, "PYTHONPATH": str(ctx.floor_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    if which == "floor_orders":
        run_checked(
            [sys.executable, str(ctx.floor_dir / "floor_orders.py"), "init"],
            cwd=ctx.work,
            env=env,
            timeout=60,
        )
    else:
        # The floor loads its key once at start: the first fixture makes it, later ones reuse it.
        await make_floor_fixture(ctx)
        env["MERCHANT_KEY"] = str(ctx.work / "fixture-floor" / "merchant_private.pem")
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", f"{which}:app", "--http", "httptools", "--loop", "uvloop"]
    cmd += ["--no-access-log", "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(ctx.args.workers)]
    service = launch(
        which, cmd, cwd=ctx.work, env=env, log=ctx.work / f"{which}.log", url=f"http://127.0.0.1:{port}"
    )
    service.database = ctx.floor_db
    ctx.services[which] = service
    await wait_ready(ctx.client, service, "/")
    return service


def add_worktree(rev: str, work: Path) -> Path:
    path = work / "baseline"
    run_checked(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, timeout=120)
    probe = run_checked(
        [sys.executable, "-c", "import app; print(app.__file__)"],
        cwd=path,
        env={**os.environ, "PYTHONPATH": str(path), "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=60,
    ).strip()
    if not probe.startswith(str(path)):
        raise SuiteError(f"the baseline imports app from {probe}, not from its worktree {path}")
    return path


def remove_worktree(path: Path | None) -> None:
    if path is None:
        return
    subprocess.run(
        ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True, timeout=60
    )
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True, timeout=60)


# --------------------------------------------------------------------------------------------------
# data made through the API


async def create_orders(ctx: Context, service: Service, count: int) -> list[tuple[str, str]]:
    """`count` orders through POST /orders: (id, access token) each."""
    made: list[tuple[str, str]] = []

    async def one(_: int) -> None:
        status, body = await call(ctx.client, "POST", f"{service.url}/orders", json=ORDER)
        if status != 201:
            raise SuiteError(f"{service.name}: POST /orders answered {status}: {body}")
        made.append((body["id"], body["access_token"]))

    await bounded(range(count), one, CLIENT_CONCURRENCY, SETUP_SECONDS)
    return made


async def open_sessions(ctx: Context, service: Service, count: int) -> list[str]:
    """`count` orders with a payment session at the simulator: their provider session ids."""
    ids: list[str] = []

    async def one(order: tuple[str, str]) -> None:
        status, body = await call(
            ctx.client,
            "POST",
            f"{service.url}/orders/{order[0]}/payment-session",
            json={},
            headers={"Authorization": f"Bearer {order[1]}"},
        )
        if status != 201:
            raise SuiteError(f"{service.name}: POST payment-session answered {status}: {body}")
        ids.append(body["provider_session_id"])

    await bounded(await create_orders(ctx, service, count), one, CLIENT_CONCURRENCY, SETUP_SECONDS)
    return ids


def write_orders(path: Path, orders: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{order_id} {token}\n" for order_id, token in orders))
    return path


async def make_floor_fixture(ctx: Context) -> Path:
    out = ctx.work / "fixture-floor"
    cmd = [sys.executable, str(ctx.floor_dir / "make_webhook_fixture.py"), "--out", str(out)]
    cmd += ["--count", str(ctx.args.webhook_count), "--rows", str(FLOOR_ROWS)]
    await asyncio.to_thread(run_checked, cmd, cwd=ctx.work, timeout=SETUP_SECONDS)
    return out / "requests.tsv"


async def make_project_fixture(ctx: Context, sessions: Path) -> Path:
    out = ctx.work / "fixture-project"
    cmd = [sys.executable, str(ctx.floor_dir / "make_webhook_fixture.py"), "--out", str(out)]
    cmd += ["--count", str(ctx.args.webhook_count), "--ids", str(sessions), "--key", str(ctx.key_file)]
    cmd += ["--key-id", APP_ID]
    await asyncio.to_thread(run_checked, cmd, cwd=ctx.work, timeout=SETUP_SECONDS)
    return out / "requests.tsv"


# --------------------------------------------------------------------------------------------------
# wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise SuiteError(f"unreadable wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests, req/s, p50/p99, socket errors, non-2xx and the lua script's statuses of a wrk run."""
    out: dict[str, Any] = {}
    if match := re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", output, re.M):
        out["requests"] = int(match[1])
    if match := re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M):
        out["rps"] = float(match[1])
    for pct in ("50", "99"):
        if match := re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M):
            out[f"p{pct}_ms"] = _ms(match[1])
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors = dict(zip(errors, map(int, match.groups()), strict=True))
    out["socket_errors"] = errors
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    out["non_2xx"] = int(match[1]) if match else 0
    statuses: dict[str, int] = {}
    if match := re.search(r"statuses:(.*)$", output, re.M):
        for part in match[1].split():
            code, _, count = part.partition("=")
            statuses[code] = int(count)
    out["statuses"] = statuses
    if match := re.search(r"exhausted=(\d+)", output):
        out["exhausted"] = int(match[1])
    missing = {"requests", "rps", "p50_ms", "p99_ms"} - out.keys()
    if missing:
        raise SuiteError(f"wrk output without {sorted(missing)}:\n{output[-2000:]}")
    return out


async def wrk(ctx: Context, url: str, script: Path, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    args = ctx.args
    cmd = [WRK, f"-t{WRK_THREADS}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    cmd += ["--timeout", "10s", "-s", str(script), url]
    process = await asyncio.create_subprocess_exec(
        *cmd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ctx.work,
    )
    try:
        raw, _ = await asyncio.wait_for(process.communicate(), timeout=args.duration + 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = raw.decode(errors="replace")
    if process.returncode != 0:
        raise SuiteError(f"wrk failed ({process.returncode}):\n{output[-2000:]}")
    return parse_wrk(output), output


# --------------------------------------------------------------------------------------------------
# scenarios


def schedule(sides: tuple[str, ...], repeat: int) -> Iterator[tuple[int, str]]:
    """(round, side): A B, B A, A B ... (with three sides A B C, C B A, ...)."""
    for i in range(repeat):
        for side in sides if i % 2 == 0 else tuple(reversed(sides)):
            yield i, side


async def backlog(service: Service) -> int:
    conn = service.extra["poller"]
    return int(await conn.fetchval("SELECT count(*) FROM provider_events WHERE processed_at IS NULL"))


async def drain(service: Service, seconds: float) -> float | None:
    """Wait until the project's inbox worker has applied every stored webhook (bounded): a backlog
    left behind would be worked off during the next runs, on both sides' CPU. Seconds waited, or
    None when it was not empty in time."""
    started = time.monotonic()
    while await backlog(service):
        if time.monotonic() - started > seconds:
            return None
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def prepare(
    ctx: Context, scenario: str, side: str, service: Service, state: dict[str, Any]
) -> tuple[str, Path, dict[str, str]]:
    """URL, wrk script and its environment for one run, with the data it needs made just before."""
    floor, run_dir = ctx.floor_dir, ctx.work
    if scenario == "webhook":
        if side == "floor":
            fixture = await make_floor_fixture(ctx)
        else:
            if "sessions" not in state:
                ids = await open_sessions(ctx, service, WEBHOOK_SESSIONS)
                state["sessions"] = run_dir / "sessions.txt"
                state["sessions"].write_text("".join(f"{i}\n" for i in ids))
            fixture = await make_project_fixture(ctx, state["sessions"])
        return service.url, floor / "webhook.lua", {"WEBHOOK_FIXTURE": str(fixture)}
    if scenario == "orders":
        return service.url, floor / "orders.lua", {}
    if scenario in ("healthz", "products"):
        return f"{service.url}/{scenario}", BENCH / "get.lua", {}
    if scenario == "order_read":
        key = f"read-{side}"
        if key not in state:
            state[key] = write_orders(run_dir / f"{key}.txt", await create_orders(ctx, service, READ_ORDERS))
        return service.url, BENCH / "order_read.lua", {"ORDER_FILE": str(state[key])}
    if scenario == "payment_session":
        fastest = state.get(f"rate-{side}")
        count = PAYMENT_FIRST_RATE * ctx.args.duration if fastest is None else 2 * fastest * ctx.args.duration
        count = max(200, min(math.ceil(count), MAX_PAYMENT_ORDERS))
        path = write_orders(run_dir / f"pay-{side}.txt", await create_orders(ctx, service, count))
        state[f"orders-{side}"] = count
        env = {"PAYMENT_FILE": str(path), "WRK_THREADS": str(WRK_THREADS)}
        return service.url, BENCH / "payment_session.lua", env
    raise AssertionError(scenario)


def run_problems(scenario: str, expected: int, result: dict[str, Any], ctx: Context) -> list[str]:
    problems = []
    errors = {kind: n for kind, n in result["socket_errors"].items() if n}
    if errors:
        problems.append(f"socket errors {errors}")
    if result["non_2xx"]:
        problems.append(f"{result['non_2xx']} non-2xx answers")
    others = {code: n for code, n in result["statuses"].items() if code != str(expected)}
    if scenario == "payment_session" and result.get("exhausted"):
        others.pop("200", None)  # the GET /healthz each exhausted thread ends with
        problems.append(
            f"{result['exhausted']} thread(s) ran out of orders ({result.get('orders')} made): rate not valid"
        )
    if others or not result["statuses"]:
        problems.append(f"statuses {result['statuses']} (expected only {expected})")
    # Each wrk thread starts half-way through the fixture: a thread that sends more than its half
    # replays the other's deliveries, which are cheaper to answer. 10 % of room for uneven threads.
    if scenario == "webhook" and result["requests"] >= 0.9 * ctx.args.webhook_count:
        problems.append(
            f"{result['requests']} requests from a {ctx.args.webhook_count}-line fixture: deliveries may "
            "have been replayed (raise --webhook-count)"
        )
    return problems


async def run_scenario(ctx: Context, scenario: str, services: dict[str, Service]) -> list[dict[str, Any]]:
    sides, expected, what = PLAN[scenario]
    sides = tuple(side for side in sides if side in services)
    state: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    if scenario == "webhook" and "project" in services and "poller" not in services["project"].extra:
        # Opened before the load: the runs may leave no connection free on a shared server.
        assert services["project"].database is not None
        services["project"].extra["poller"] = await pg_connect(ctx.server_url, services["project"].database)
    print(f"\n== {scenario}: {what} ({', '.join(sides)})", flush=True)
    for round_, side in schedule(sides, ctx.args.repeat):
        service = services[side]
        url, script, env = await prepare(ctx, scenario, side, service, state)
        sim = service.simulator
        checkpointed = await ctx.checkpoint()
        load_start = os.getloadavg()
        cpu_before = service.cpu()
        sim_before = sim.cpu() if sim else {}
        db_before = postgres_cpu(ctx.private_pg)
        result, output = await wrk(ctx, url, script, env)
        cpu_after = service.cpu()
        sim_after = sim.cpu() if sim else {}
        db_after = postgres_cpu(ctx.private_pg)
        db_connections = await ctx.connections(service.database)
        result.update(
            scenario=scenario,
            side=side,
            round=round_,
            load_start=load_start,
            load_end=os.getloadavg(),
            cpu_s=cpu_spent(cpu_before, cpu_after),
            sim_cpu_s=cpu_spent(sim_before, sim_after) if sim else None,
            db_cpu_s=cpu_spent(db_before, db_after) if db_after else None,
            rss_mb=service.rss_mb(),
            processes=len(cpu_after),
            db_connections=db_connections,
            checkpointed=checkpointed,
        )
        if scenario == "payment_session":
            result["orders"] = state[f"orders-{side}"]
            # A run that ran out was faster than its orders allowed: the next gets twice as many.
            seen = result["orders"] / ctx.args.duration if result.get("exhausted") else result["rps"]
            state[f"rate-{side}"] = max(state.get(f"rate-{side}", 0.0), seen)
        if scenario == "webhook" and side == "project":
            # Workers off: the events stored, left for a worker process; on: the backlog drained.
            result["backlog_end"] = await backlog(service)
        if scenario == "webhook" and side == "project" and ctx.args.inbox_workers == "on":
            await asyncio.sleep(BACKLOG_WAIT_SECONDS)
            result["backlog_5s"] = await backlog(service)
            waited = await drain(service, ctx.args.drain_timeout)
            result["drain_s"] = None if waited is None else BACKLOG_WAIT_SECONDS + waited
            if waited is None:
                print(
                    f"  note: inbox backlog not applied within {ctx.args.drain_timeout} s after the run; "
                    "the next runs share the machine with the worker",
                    flush=True,
                )
        requests = max(result["requests"], 1)
        result["cpu_ms_per_req"] = result["cpu_s"] / requests * 1000
        if result["sim_cpu_s"] is not None:
            result["sim_cpu_ms_per_req"] = result["sim_cpu_s"] / requests * 1000
        if result["db_cpu_s"] is not None:
            result["db_cpu_ms_per_req"] = result["db_cpu_s"] / requests * 1000
        result["problems"] = run_problems(scenario, expected, result, ctx)
        if service.process.poll() is not None:
            result["problems"].append(
                f"{side} exited ({service.process.returncode}):\n{log_tail(service.log)}"
            )
        if result["problems"]:
            result["wrk_output"] = output
            # What the service said about the answers it refused, before its log goes with the run.
            result["service_log"] = log_tail(service.log)
            print(f"  {side} log (last lines):\n{result['service_log']}", flush=True)
        runs.append(result)
        extra = ""
        if "backlog_end" in result and "drain_s" not in result:
            extra = f"  stored {result['backlog_end']} events in all (inbox workers off)"
        elif "backlog_end" in result:
            drained = f"{result['drain_s']:.0f} s" if result["drain_s"] is not None else "not in time"
            extra = (
                f"  inbox backlog {result['backlog_end']} at the end, {result['backlog_5s']} 5 s later, "
                f"all applied after {drained}"
            )
        if result.get("sim_cpu_ms_per_req") is not None:
            extra += f"  sim CPU {result['sim_cpu_ms_per_req']:.2f} ms/req"
        if result.get("db_cpu_ms_per_req") is not None:
            extra += f"  db CPU {result['db_cpu_ms_per_req']:.2f} ms/req"
        print(
            f"  {scenario:<15} {side:<8} round {round_ + 1}: {result['rps']:>9.1f} req/s  p50 "
            f"{result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  CPU {result['cpu_ms_per_req']:.2f} "
            f"ms/req  statuses {result['statuses']}  db conns {db_connections}{extra}  load "
            f"{load_start[0]:.2f}->{result['load_end'][0]:.2f}",
            flush=True,
        )
        for problem in result["problems"]:
            print(f"  PROBLEM: {problem}", flush=True)
    return runs


async def run_inbox_burst(ctx: Context) -> list[dict[str, Any]]:
    print(
        "\n== inbox_burst: 500 webhooks, one process, provider reads 200 ms (bench/inbox_burst.py)",
        flush=True,
    )
    runs = []
    for i in range(ctx.args.repeat):
        load_start = os.getloadavg()
        result = await inbox_burst.run_once(
            ctx.server_url,
            (ctx.private_pem, ctx.public_pem),
            label=f"A{i + 1}",
            events=500,
            latency=0.2,
            concurrency=16,
        )
        result.update(
            scenario="inbox_burst", side="project", round=i, load_start=load_start, load_end=os.getloadavg()
        )
        problems = []
        if result["errors"]:
            problems.append(result["errors"])
        if result["non_2xx"]:
            problems.append(f"{result['non_2xx']} non-2xx webhook answers: {result['failures']}")
        result["problems"] = problems
        runs.append(result)
        applied = f"{result['applied_s']:.2f} s" if result["applied_s"] is not None else "NOT applied"
        print(
            f"  inbox_burst run {i + 1}: {applied} (ingest {result['ingest_s']:.2f} s, service CPU "
            f"{result['service_cpu']:.1f} s, host busy {result['host_busy']:.0%})",
            flush=True,
        )
        for problem in problems:
            print(f"  PROBLEM: {problem}", flush=True)
    return runs


# --------------------------------------------------------------------------------------------------
# report


def _range(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{min(values):{fmt}}-{max(values):{fmt}}" if len(values) > 1 else f"{values[0]:{fmt}}"


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario and side: mean and range; ratios of project to each other side per round."""
    summary: dict[str, Any] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in runs if r["scenario"] != "inbox_burst"):
        mine = [r for r in runs if r["scenario"] == scenario]
        sides: dict[str, Any] = {}
        for side in dict.fromkeys(r["side"] for r in mine):
            of_side = [r for r in mine if r["side"] == side]
            rss = [mb for r in of_side for mb in r["rss_mb"]]
            sim = [r["sim_cpu_ms_per_req"] for r in of_side if r.get("sim_cpu_ms_per_req") is not None]
            db = [r["db_cpu_ms_per_req"] for r in of_side if r.get("db_cpu_ms_per_req") is not None]
            sides[side] = {
                "rps": [r["rps"] for r in of_side],
                "rps_mean": statistics.fmean(r["rps"] for r in of_side),
                "p50_ms": [r["p50_ms"] for r in of_side],
                "p99_ms": [r["p99_ms"] for r in of_side],
                "cpu_ms_per_req": statistics.fmean(r["cpu_ms_per_req"] for r in of_side),
                "sim_cpu_ms_per_req": statistics.fmean(sim) if sim else None,
                "db_cpu_ms_per_req": statistics.fmean(db) if db else None,
                "rss_mb_per_worker": statistics.fmean(rss) if rss else None,
                "problems": sum(len(r["problems"]) for r in of_side),
            }
            if scenario == "webhook" and side == "project" and "drain_s" in of_side[0]:
                sides[side]["backlog_end"] = [r["backlog_end"] for r in of_side]
                sides[side]["backlog_5s"] = [r["backlog_5s"] for r in of_side]
                sides[side]["drain_s"] = [r["drain_s"] for r in of_side]
            elif scenario == "webhook" and side == "project":
                sides[side]["stored"] = [r["backlog_end"] for r in of_side]
        ratios: dict[str, Any] = {}
        for other in ("floor", "baseline"):
            rounds = _same_rounds(mine, other)
            rates = [p["rps"] / o["rps"] for p, o in rounds if o["rps"] > 0]
            if rates:
                ratios[f"project/{other}"] = _ratio(rates)
            if scenario == "webhook" and other == "floor":
                # The target's other half: p99 within 1.5x of the floor's, round by round.
                p99s = [p["p99_ms"] / o["p99_ms"] for p, o in rounds if o["p99_ms"] > 0]
                if p99s:
                    ratios["p99 project/floor"] = _ratio(p99s)
        if scenario == "payment_session":
            rounds = _same_rounds(mine, "baseline")
            # The simulator runs on the same cores and its share is the same work on both sides:
            # the service's own cost per session, compared round by round.
            costs = [o["cpu_ms_per_req"] / p["cpu_ms_per_req"] for p, o in rounds if p["cpu_ms_per_req"] > 0]
            if costs:
                ratios["service CPU per session, baseline/project (simulator excluded)"] = _ratio(costs)
            # The target's measure: the machine's time per session (its cores over the rate) less
            # the simulator's CPU in it, which is the provider's latency on these cores.
            cores = os.cpu_count() or 1
            machine = [
                _machine_ms(o, cores) / _machine_ms(p, cores)
                for p, o in rounds
                if p["rps"] > 0 and o["rps"] > 0
            ]
            if machine:
                ratios[f"machine time per session less the simulator's, baseline/project ({cores} cores)"] = (
                    _ratio(machine)
                )
        summary[scenario] = {"sides": sides, "ratios": ratios}
    bursts = [r for r in runs if r["scenario"] == "inbox_burst"]
    if bursts:
        applied = [r["applied_s"] for r in bursts if r["applied_s"] is not None]
        summary["inbox_burst"] = {
            "applied_s": applied,
            "mean": statistics.fmean(applied) if applied else None,
            "cpu_ms_per_event": [r["service_cpu"] / r["events"] * 1000 for r in bursts],
        }
    return summary


def _same_rounds(runs: list[dict[str, Any]], other: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The project's runs paired with `other`'s run of the same round."""
    return [
        (p, o)
        for p in runs
        if p["side"] == "project"
        for o in runs
        if o["side"] == other and o["round"] == p["round"]
    ]


def _machine_ms(run: dict[str, Any], cores: int) -> float:
    """The machine's time per request of `run` (its cores over the rate), less the simulator's CPU."""
    return float(cores * 1000 / run["rps"] - (run["sim_cpu_ms_per_req"] or 0))


def _ratio(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "mean": statistics.fmean(values), "values": values}


def print_tables(summary: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\n{args.workers} worker process(es) per side, wrk -t{WRK_THREADS} -c{args.connections} "
        f"-d{args.duration}s, {args.repeat} run(s) per side, alternating; code {code_version()}, "
        f"baseline {args.baseline_rev}"
    )
    header = (
        "side",
        "req/s",
        "min-max",
        "p50 ms",
        "p99 ms",
        "CPU ms/req",
        "sim ms/req",
        "db ms/req",
        "RSS MB/wkr",
        "bad",
    )
    widths = (9, 9, 17, 12, 14, 11, 11, 10, 11, 4)
    for scenario, data in summary.items():
        if scenario == "inbox_burst":
            continue
        print(f"\n{scenario}: {PLAN[scenario][2]}")
        print(
            "  ".join(
                f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in enumerate(zip(header, widths, strict=True))
            )
        )
        for side, s in data["sides"].items():
            cells = (
                side,
                f"{s['rps_mean']:.0f}",
                _range(s["rps"], ".0f"),
                _range(s["p50_ms"], ".1f"),
                _range(s["p99_ms"], ".1f"),
                f"{s['cpu_ms_per_req']:.2f}",
                f"{s['sim_cpu_ms_per_req']:.2f}" if s["sim_cpu_ms_per_req"] is not None else "-",
                f"{s['db_cpu_ms_per_req']:.2f}" if s["db_cpu_ms_per_req"] is not None else "-",
                f"{s['rss_mb_per_worker']:.0f}" if s["rss_mb_per_worker"] is not None else "-",
                str(s["problems"]),
            )
            print(
                "  ".join(
                    f"{c:>{w}}" if i else f"{c:<{w}}"
                    for i, (c, w) in enumerate(zip(cells, widths, strict=True))
                )
            )
            if "backlog_end" in s:
                print(
                    f"{'':<{widths[0]}}  inbox backlog after each run: {s['backlog_end']}, "
                    f"{BACKLOG_WAIT_SECONDS} s later: {s['backlog_5s']}; all applied after (s): "
                    f"{[round(d) if d is not None else None for d in s['drain_s']]}"
                )
            if "stored" in s:
                print(
                    f"{'':<{widths[0]}}  inbox workers off: events stored by the end of each run "
                    f"(cumulative): {s['stored']}"
                )
        for name, ratio in data["ratios"].items():
            print(
                f"  {name}: median {ratio['median']:.3f}, mean {ratio['mean']:.3f} "
                f"(per round {_range(ratio['values'], '.3f')})"
            )
    if "inbox_burst" in summary:
        burst = summary["inbox_burst"]
        mean = f"{burst['mean']:.2f} s" if burst["mean"] is not None else "-"
        print(
            f"\ninbox_burst: 500 webhooks applied in {mean} (runs {_range(burst['applied_s'], '.2f')} s), "
            f"service CPU {_range(burst['cpu_ms_per_event'], '.0f')} ms per event; "
            "one process, 200 ms provider"
        )


# --------------------------------------------------------------------------------------------------
# main


def floor_versions(floor_dir: Path) -> list[str]:
    """This .venv's versions of the floor's requirements; the mismatches as problems."""
    problems = []
    pins = {}
    for line in (floor_dir / "requirements.txt").read_text().splitlines():
        if match := re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^\s#]+)", line):
            pins[match[1]] = match[2]
    installed = []
    for name in [*pins, "httptools", "uvloop"]:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "missing"
        installed.append(f"{name} {version}")
        if name in pins and version != pins[name]:
            problems.append(f"{name} {version} installed, the floors run with {pins[name]}")
        elif version == "missing":
            problems.append(f"{name} missing")
    print(f"python {sys.version.split()[0]} ({sys.executable}): {', '.join(installed)}")
    return problems


async def connection_budget(server_url: str, args: argparse.Namespace, scenarios: list[str]) -> None:
    """Wait (bounded) until the server has room for every pool the sides may hold beside what other
    clients hold: past max_connections the runs fail with errors that say nothing about the code
    measured."""
    pool = int(os.environ.get("DATABASE_POOL_SIZE", "20"))
    sides = {side for s in scenarios if s in PLAN for side in PLAN[s][0]}
    # One floor runs at a time; +2 for the suite's own connections.
    need = 2 + args.workers * (
        pool * ("project" in sides) + 20 * ("baseline" in sides) + 16 * ("floor" in sides)
    )
    deadline = time.monotonic() + args.wait_for_connections
    waited = False
    while True:
        conn = await pg_connect(server_url, "postgres")
        try:
            limit = int(await conn.fetchval("SHOW max_connections"))
            holders = await conn.fetch(
                "SELECT coalesce(datname, '-') AS db, count(*) AS n FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " GROUP BY 1 ORDER BY 2 DESC"
            )
        finally:
            await conn.close()
        in_use = sum(row["n"] for row in holders)
        held = ", ".join(f"{row['db']} {row['n']}" for row in holders) or "none"
        if in_use + need <= limit or (need > limit and in_use <= 10):
            print(
                f"database connections: {in_use} held by others of max_connections {limit}; the sides may "
                f"hold up to {need} (project {pool}, baseline 10 + 10 overflow, floor 16 per process)",
                flush=True,
            )
            if need > limit:
                print(
                    f"WARNING: the sides' pools may need {need} connections, more than max_connections "
                    f"{limit}: --private-postgres runs a server with room for them",
                    flush=True,
                )
            return
        if time.monotonic() >= deadline:
            raise SuiteError(
                f"no room for the sides' pools: {in_use} connections held by others ({held}) + {need} > "
                f"max_connections {limit} (waited {args.wait_for_connections} s; --wait-for-connections)"
            )
        if not waited:
            print(
                f"waiting up to {args.wait_for_connections} s for database connections: {in_use} held by "
                f"others ({held}), the sides may need {need}, max_connections {limit}",
                flush=True,
            )
            waited = True
        await asyncio.sleep(5)


async def main(args: argparse.Namespace) -> int:
    configured = os.environ.get("DATABASE_URL")
    if not configured and not args.private_postgres:
        raise SuiteError("DATABASE_URL (a PostgreSQL server for the scratch databases) or --private-postgres")
    scenarios = list(dict.fromkeys(s.strip() for s in args.scenarios.split(",") if s.strip()))
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise SuiteError(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    floor_dir = args.floor_dir.resolve()
    needs_floor = {"webhook", "orders"} & set(scenarios)
    if needs_floor:
        problems = floor_versions(floor_dir)
        if problems:
            raise SuiteError("the floors would not run with their versions: " + "; ".join(problems))
    private_pg: Path | None = None
    if args.private_postgres:
        server_url, private_pg = await asyncio.to_thread(start_private_postgres)
        print(f"private PostgreSQL 15 on {server_url} (max_connections 400)", flush=True)
    else:
        server_url = normalise_database_url(configured or "")
    try:
        return await measure(args, server_url, scenarios, floor_dir, private_pg)
    finally:
        stop_private_postgres(private_pg)


async def measure(
    args: argparse.Namespace, server_url: str, scenarios: list[str], floor_dir: Path, private_pg: Path | None
) -> int:
    await connection_budget(server_url, args, scenarios)
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in load_start)}", flush=True)

    private_pem, public_pem = generate_key_pair_pem()
    runs: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="bench-suite-"))
    key_file = work / "merchant-key.pem"
    key_file.write_bytes(private_pem)
    timeout = aiohttp.ClientTimeout(total=60)
    wrk_scenarios = [s for s in scenarios if s in PLAN]
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CLIENT_CONCURRENCY * 2), timeout=timeout
        ) as client:
            ctx = Context(args, server_url, work, floor_dir, client, private_pem, public_pem, key_file)
            ctx.private_pg = private_pg
            try:
                needs = {side for s in wrk_scenarios for side in PLAN[s][0]}
                if "baseline" in needs:
                    ctx.worktree = add_worktree(args.baseline_rev, work)
                for side in ("project", "baseline"):
                    if side in needs:
                        print(f"starting {side} ...", flush=True)
                        await start_app_side(ctx, side)
                for n, scenario in enumerate(wrk_scenarios):
                    services = {
                        side: ctx.services[side] for side in ("project", "baseline") if side in ctx.services
                    }
                    if "floor" in PLAN[scenario][0]:
                        which = "floor_webhook" if scenario == "webhook" else "floor_orders"
                        if which not in ctx.services:
                            print(f"starting {which} ...", flush=True)
                            await start_floor(ctx, which)
                        services["floor"] = ctx.services[which]
                    runs += await run_scenario(ctx, scenario, services)
                    # A floor serves one scenario: stopped once no later one needs it, so that its
                    # pool's connections are given back.
                    later = wrk_scenarios[n + 1 :]
                    for which, user in (("floor_webhook", "webhook"), ("floor_orders", "orders")):
                        if which in ctx.services and user not in later:
                            stop_service(ctx.services.pop(which))
            except Exception:
                # What the services said, before their logs go with the scratch directory.
                for service in ctx.services.values():
                    for each in (service, service.simulator):
                        if each is not None:
                            print(f"--- {each.name} log (last lines):\n{log_tail(each.log)}", file=sys.stderr)
                raise
            finally:
                for service in list(ctx.services.values()):
                    if "poller" in service.extra:
                        await service.extra.pop("poller").close()
                    stop_service(service)
                ctx.services.clear()
                if ctx.monitor is not None:
                    await ctx.monitor.close()
                    ctx.monitor = None
                remove_worktree(ctx.worktree)
                for name in ctx.databases:
                    await scratch_database(server_url, name, drop=True)
            if "inbox_burst" in scenarios:
                runs += await run_inbox_burst(ctx)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load_end = os.getloadavg()
    summary = summarise(runs)
    print_tables(summary, args)
    print(
        f"\nload average: {' '.join(f'{x:.2f}' for x in load_start)} at the start, "
        f"{' '.join(f'{x:.2f}' for x in load_end)} at the end"
    )
    results_dir = BENCH / "results"
    results_dir.mkdir(exist_ok=True)
    out = results_dir / f"suite-{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "code": code_version(),
                "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "load_start": load_start,
                "load_end": load_end,
                "summary": summary,
                "runs": runs,
            },
            indent=2,
            default=str,
        )
    )
    print(f"raw results: {out.relative_to(ROOT)}")
    bad = [r for r in runs if r["problems"]]
    if bad:
        print(f"\nFAILED: {len(bad)} run(s) with problems:")
        for r in bad:
            first_lines = "; ".join(p.splitlines()[0] for p in r["problems"])
            print(f"  {r['scenario']} {r['side']} round {r['round'] + 1}: {first_lines}")
        return 1
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so the services and the worktree are cleaned up as on Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="processes per service (1-8)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (1-60)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (2-512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side and scenario (1-6)")
    parser.add_argument("--baseline-rev", default="e8cd50c", help="the commit measured as the baseline")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, in this order")
    parser.add_argument(
        "--floor-dir",
        type=Path,
        default=ROOT.parent / "shared" / "bench",
        help="the floors' folder (read only)",
    )
    parser.add_argument(
        "--webhook-count",
        type=int,
        default=60_000,
        help="requests per webhook fixture (more than a run sends)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=int,
        default=300,
        help="seconds to wait after a project webhook run for its inbox backlog to be applied",
    )
    parser.add_argument(
        "--inbox-workers",
        choices=["on", "off"],
        default="on",
        help="off: the project's server processes only store webhooks (WORKERS_ENABLED=false), as when "
        "the workers run in a process of their own; the webhook scenario then measures intake alone",
    )
    parser.add_argument(
        "--private-postgres",
        action="store_true",
        help="run the scratch databases on a PostgreSQL 15 cluster of the suite's own (DATABASE_URL unused)",
    )
    parser.add_argument(
        "--wait-for-connections",
        type=int,
        default=600,
        help="seconds to wait for the database server to have room for every pool (others share it)",
    )
    parsed = parser.parse_args()
    parsed.workers = max(1, min(parsed.workers, 8))
    parsed.duration = max(1, min(parsed.duration, 60))
    parsed.connections = max(WRK_THREADS, min(parsed.connections, 512))
    parsed.repeat = max(1, min(parsed.repeat, 6))
    parsed.webhook_count = max(1000, min(parsed.webhook_count, 500_000))
    parsed.wait_for_connections = max(0, min(parsed.wait_for_connections, 3600))
    parsed.drain_timeout = max(0, min(parsed.drain_timeout, 1800))
    if not Path(WRK).exists():
        sys.exit(f"{WRK} not found (apt-get install wrk)")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(asyncio.run(main(parsed)))
    except SuiteError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted: services stopped, scratch databases dropped, worktree removed", file=sys.stderr)
        sys.exit(130)
