"""`checkout serve` as an operator meets it: it refuses to start on a database it cannot use and says
why in one line, `--check` lists what is wrong without starting, `--wait-for-db` waits for a database
that comes up late, and `--workers N` runs N server processes."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.devdb import with_database
from app.migrations_info import head_revision
from tests.support.servers import free_port
from tests.support.settings_env import every_env_name


def _env(database_url: str, **extra: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k.upper() not in every_env_name()}
    return {**inherited, "DATABASE_URL": database_url, **extra}


def _checkout(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=tempfile.mkdtemp(prefix="checkout-serve-"),  # no .env file
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def _sql(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A database with no tables: reachable, never migrated."""
    name = f"checkout_serve_{secrets.token_hex(4)}"
    admin = with_database(server_url, "postgres")
    asyncio.run(_sql(admin, f'CREATE DATABASE "{name}"'))
    yield with_database(server_url, name)
    asyncio.run(_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@asynccontextmanager
async def _served(*args: str, env: dict[str, str]) -> AsyncIterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        env=env,
        cwd=tempfile.mkdtemp(prefix="checkout-serve-"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
                process.wait(timeout=5)


async def _ready(url: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            assert process.poll() is None, f"serve exited with {process.returncode}: {process.stderr}"
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready after {timeout}s"
            await asyncio.sleep(0.1)


def test_check_names_an_unreachable_database_without_its_password() -> None:
    port = free_port()  # nothing listens there
    result = _checkout("serve", "--check", env=_env(f"postgresql://shop:s3cret-pw@127.0.0.1:{port}/shop"))
    assert result.returncode == 1
    assert result.stdout.startswith("problem: the database at postgresql+asyncpg://shop:***@127.0.0.1:")
    assert "unreachable" in result.stdout
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_check_lists_invalid_settings(database_url: str) -> None:
    result = _checkout("serve", "--check", env=_env(database_url, PROVIDER_ENV="staging"))
    assert result.returncode == 1
    assert result.stdout.startswith("problem: ")
    assert "provider_env" in result.stdout.lower()


def test_check_passes_on_a_migrated_database_and_warns_when_the_pools_do_not_fit(database_url: str) -> None:
    result = _checkout("serve", "--check", env=_env(database_url))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"database reachable and at migration {head_revision()}" in result.stdout

    crowded = _checkout(
        "serve", "--check", "--workers", "64", env=_env(database_url, DATABASE_POOL_SIZE="50")
    )
    assert crowded.returncode == 0
    assert "warning: 64 process(es) x DATABASE_POOL_SIZE=50 = 3200 connections" in crowded.stdout


async def test_serve_refuses_a_database_that_is_not_migrated_in_one_json_line(empty_database: str) -> None:
    started = time.monotonic()
    result = await asyncio.to_thread(_checkout, "serve", "--port", str(free_port()), env=_env(empty_database))
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout + result.stderr
    refusal = json.loads(lines[0])
    assert refusal["event"] == "serve_refused"
    assert f"is at migration none, this version needs {head_revision()}" in refusal["reason"]
    # Nothing was created in the database it refused.
    engine = create_async_engine(empty_database)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT to_regclass('orders')"))).scalar() is None
    finally:
        await engine.dispose()


async def test_serve_waits_for_the_database_when_asked(empty_database: str) -> None:
    env = _env(empty_database, WORKERS_ENABLED="false")
    async with _served("--wait-for-db", "60", env=env) as (process, url):
        await asyncio.sleep(1.5)
        assert process.poll() is None, "it gave up instead of waiting"
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(timeout=1) as http:
                await http.get(f"{url}/healthz")
        migrated = await asyncio.to_thread(_checkout, "migrate", env=env, timeout=60)
        assert migrated.returncode == 0, migrated.stderr
        await _ready(url, process, timeout=20)


async def test_serve_with_two_workers_runs_two_server_processes(
    database_url: str, clean_database: str
) -> None:
    env = _env(database_url, WORKERS_ENABLED="false", RATE_LIMIT_ENABLED="false")
    async with _served("--workers", "2", env=env) as (process, url):
        await _ready(url, process, timeout=40)
        servers = [
            child
            for child in psutil.Process(process.pid).children()
            if any("spawn" in part for part in child.cmdline())
        ]
        assert len(servers) == 2, [child.cmdline() for child in psutil.Process(process.pid).children()]
        async with httpx.AsyncClient(timeout=5) as http:
            answers = await asyncio.gather(*(http.get(f"{url}/products") for _ in range(40)))
        assert {answer.status_code for answer in answers} == {200}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert not any(server.is_running() and server.status() != psutil.STATUS_ZOMBIE for server in servers)
