"""Metrics on real PostgreSQL and real processes: a transition counts once its transaction commits,
and with several processes sharing PROMETHEUS_MULTIPROC_DIR every scrape sums them all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.db import transaction
from app.models import TransitionSource
from app.payments import writer
from app.providers.base import PaymentStatus
from tests.conftest import ADMIN_KEY
from tests.integration.test_writer import make_order, snapshot_for
from tests.support.service_process import ServiceProcess

TOKEN = "metrics-token-for-the-process-tests-0123"
PAID = {"provider": "fintecture", "from_state": "awaiting_payment", "to_state": "paid", "source": "webhook"}


def paid_count() -> float:
    return metrics.REGISTRY.get_sample_value("checkout_payment_transitions_total", PAID) or 0.0


async def test_a_transition_counts_only_once_committed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, (session_id,) = await make_order(sessionmaker)
    snap = await snapshot_for(
        sessionmaker, session_id, PaymentStatus.SUCCEEDED, "payment_created", "completed"
    )
    before = paid_count()

    class Abort(Exception):
        pass

    try:
        async with transaction(sessionmaker) as db:
            result = await writer.apply(
                db, session_id, snap, source=TransitionSource.WEBHOOK, observed_at=datetime.now(UTC)
            )
            assert result.order_changed
            raise Abort
    except Abort:
        pass
    assert paid_count() == before  # rolled back: it never happened

    async with transaction(sessionmaker) as db:
        await writer.apply(
            db, session_id, snap, source=TransitionSource.WEBHOOK, observed_at=datetime.now(UTC)
        )
    assert paid_count() == before + 1
    async with transaction(sessionmaker) as db:  # the same answer again moves nothing
        await writer.apply(
            db, session_id, snap, source=TransitionSource.WEBHOOK, observed_at=datetime.now(UTC)
        )
    assert paid_count() == before + 1


def test_provider_operations_carry_no_identifier() -> None:
    op = metrics.provider_operation
    assert op("GET", "/pis/v2/payments/7f3c2a9e0b1d4c5e8f6a7b8c9d0e1f2a") == "GET /pis/v2/payments/{id}"
    assert op("POST", "/pis/v2/connect") == "POST /pis/v2/connect"
    assert op("POST", "/oauth/accesstoken") == "POST /oauth/accesstoken"
    assert op("GET", "/2.0/payments/123") == "GET /2.0/payments/{id}"
    assert op("POST", "/powens/2.0/payments/98/scopedtoken") == "POST /powens/2.0/payments/{id}/scopedtoken"
    assert op("GET", "/x/" + "a" * 40) == "GET /x/{id}"


def test_prepare_multiprocess_dir_names_a_clean_directory(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    assert metrics.prepare_multiprocess_dir(tmp_path, env) == tmp_path
    assert env == {metrics.MULTIPROC_ENV: str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    # Without a path: the one the environment names, else a new one.
    assert metrics.prepare_multiprocess_dir(environ=env) == tmp_path
    fresh: dict[str, str] = {}
    made = metrics.prepare_multiprocess_dir(environ=fresh)
    assert made.is_dir() and fresh[metrics.MULTIPROC_ENV] == str(made)
    made.rmdir()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_two_processes_sharing_the_directory_are_summed(
    database_url: str, clean_database: str, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": database_url,
        "ADMIN_API_KEY": ADMIN_KEY,
        "METRICS_TOKEN": TOKEN,
        "WORKERS_ENABLED": "false",
        "RATE_LIMIT_ENABLED": "false",
    }
    # What `checkout serve --workers N` does in its parent before the workers start.
    metrics.prepare_multiprocess_dir(tmp_path / "metrics", env)
    first, second = ServiceProcess(env), ServiceProcess(env)
    try:
        await asyncio.gather(first.start(), second.start())
        async with httpx.AsyncClient(timeout=10) as http:
            for process, count in ((first, 3), (second, 5)):
                for _ in range(count):
                    assert (await http.get(f"{process.url}/products")).status_code == 200
                assert (await http.get(f"{process.url}/orders/not-an-id")).status_code in (401, 404, 422)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            scrapes = [await http.get(f"{p.url}/metrics", headers=auth) for p in (first, second)]
            second.stop()  # its counts stay in the directory once it is gone
            after_stop = await http.get(f"{first.url}/metrics", headers=auth)
    finally:
        first.stop()
        second.stop()

    products = (
        "checkout_http_requests_total",
        frozenset({("method", "GET"), ("route", "/products"), ("status", "200")}),
    )
    for scrape in (*scrapes, after_stop):
        assert scrape.status_code == 200, scrape.text
        samples = _samples(scrape.text)
        assert samples[products] == 8  # 3 + 5, whichever process answers
        by_route = [
            k
            for k in samples
            if k[0] == "checkout_http_requests_total" and ("route", "/orders/{order_id}") in k[1]
        ]
        assert sum(samples[k] for k in by_route) == 2
        # Read from the database once per scrape, not once per process.
        assert samples[("checkout_inbox_depth", frozenset())] == 0
        assert [k for k in samples if k[0] == "checkout_orders_needs_review"] == [
            ("checkout_orders_needs_review", frozenset())
        ]
    assert not os.environ.get(metrics.MULTIPROC_ENV)  # the test process itself stayed single


async def test_checkout_serve_with_two_workers_sums_them(
    database_url: str, clean_database: str, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    service = ServiceProcess(
        {
            "DATABASE_URL": database_url,
            "ADMIN_API_KEY": ADMIN_KEY,
            "METRICS_TOKEN": TOKEN,
            "WORKERS_ENABLED": "false",
            "RATE_LIMIT_ENABLED": "false",
            metrics.MULTIPROC_ENV: str(directory),
        }
    )
    command = ["serve", "--host", "127.0.0.1", "--port", str(service.port), "--workers", "2"]
    with service.log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *command],
            cwd=service.workdir,
            env=service.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        # Each worker opens its counter file as it imports the metrics: two files, two processes.
        while len(list(directory.glob("counter_*.db"))) < 2:
            assert process.poll() is None, service.log()
            assert time.monotonic() < deadline, service.log()
            await asyncio.sleep(0.1)
        while service.log().count("Application startup complete") < 2:  # both workers serve
            assert process.poll() is None and time.monotonic() < deadline, service.log()
            await asyncio.sleep(0.1)
        requests = 40
        for _ in range(requests):  # a new connection each, so both workers take some
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(f"{service.url}/products")
                assert response.status_code == 200, response.text
        per_worker = [
            sum(
                sample.value
                for family in prometheus_multiprocess.MultiProcessCollector.merge([str(path)])
                for sample in family.samples
                if sample.name == "checkout_http_requests_total" and sample.labels["route"] == "/products"
            )
            for path in directory.glob("counter_*.db")
        ]
        assert len(per_worker) == 2 and sum(per_worker) == requests and min(per_worker) > 0, per_worker
        key = (
            "checkout_http_requests_total",
            frozenset({("method", "GET"), ("route", "/products"), ("status", "200")}),
        )
        for _ in range(6):  # whichever worker answers the scrape, it shows both workers' requests
            async with httpx.AsyncClient(timeout=10) as http:
                scrape = await http.get(
                    f"{service.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
                )
            assert scrape.status_code == 200, scrape.text
            assert _samples(scrape.text)[key] == requests
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
