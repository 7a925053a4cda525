"""CPU per webhook delivery inside the process, the project's app against the floor's, without the
network: where the wrk suite's figures move with the machine's load, this isolates the Python each
side runs per delivery.

Each side is driven as an ASGI app in a process of its own (no server, no sockets to the client):
`--concurrency` tasks send `--deliveries` signed deliveries per round through it, against scratch
databases on `DATABASE_URL`'s server (dropped at the end), and the process's CPU (user + system) per
delivery is printed, with the RSA-OAEP decryption's share timed apart (it is the same operation on
both sides). Sides alternate; each round uses fresh deliveries (made by the floor's
make_webhook_fixture.py, one key for both). The floor runs from `--floor-dir`, never copied here.
The project side runs with the inbox workers off, so that it measures intake alone, as the suite's
`--inbox-workers off` does.

`--baseline-rev REV` adds a third side: the project as it was at REV (a `git worktree`, removed at
the end, whose own bench/webhook_cpu.py drives it), on the same database and fixtures, so that a
change to the webhook's path is measured against the code before it in the same window.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/webhook_cpu.py \\
        [--floor-dir ../shared/bench] [--deliveries 3000] [--concurrency 16] [--rounds 3] [--repeat 3] \\
        [--baseline-rev REV]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "bench-webhook-cpu"
SCRATCH = {"project": "bench_webhook_cpu_project", "floor": "bench_webhook_cpu_floor"}


async def _prepare(server_url: str) -> None:
    """The two scratch databases, new; the floor's with its README's 100,000-row table."""
    from inbox_burst import pg_connect, scratch_database

    for name in SCRATCH.values():
        await scratch_database(server_url, name)
    floor = await pg_connect(server_url, SCRATCH["floor"])
    try:
        await floor.execute(
            "CREATE TABLE orders (id uuid PRIMARY KEY, status text NOT NULL, amount bigint NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now());"
            " INSERT INTO orders SELECT md5(i::text)::uuid, 'created', i + 100, now()"
            " FROM generate_series(1, 100000) AS i"
        )
        await floor.execute("VACUUM ANALYZE orders")
    finally:
        await floor.close()


async def _drop_scratch(server_url: str) -> None:
    from inbox_burst import scratch_database

    for name in SCRATCH.values():
        await scratch_database(server_url, name, drop=True)


def _migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, env=env, check=True)


def _fixture(floor_dir: Path, out: Path, count: int, key: Path | None, sessions: Path | None) -> Path:
    cmd = [sys.executable, str(floor_dir / "make_webhook_fixture.py"), "--out", str(out)]
    cmd += ["--count", str(count)]
    if key is not None:
        cmd += ["--key", str(key)]
    if sessions is not None:
        cmd += ["--ids", str(sessions), "--key-id", APP_ID]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out / "requests.tsv"


# --- one side, in its own process -------------------------------------------------------------


def _scope(fields: list[str]) -> tuple[dict[str, Any], bytes]:
    date, digest, request_id, signature, body = fields
    raw = body.encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"content-length", str(len(raw)).encode()),
        (b"date", date.encode()),
        (b"digest", digest.encode()),
        (b"x-request-id", request_id.encode()),
        (b"signature", signature.encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhook",
        "raw_path": b"/webhook",
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "headers": headers,
    }
    return scope, raw


def run_side(side: str, fixture: Path, deliveries: int, concurrency: int, rounds: int) -> None:
    """Runs in a child process: prints one JSON line per round."""
    rsa_seconds: list[float] = []

    def timed(decrypt: Any) -> Any:
        def timed_decrypt(*args: Any) -> Any:
            started = time.process_time()
            try:
                return decrypt(*args)
            finally:
                rsa_seconds.append(time.process_time() - started)

        return timed_decrypt

    if side == "project":
        sys.path.insert(0, str(ROOT))
        from app.main import create_app
        from app.providers.fintecture import webhooks

        app: Any = create_app()
        webhooks.decrypt_webhook_signature = timed(webhooks.decrypt_webhook_signature)  # type: ignore[attr-defined]
    else:
        import floor_webhook  # type: ignore[import-not-found]

        app = floor_webhook.app
        floor_webhook._decrypt = timed(floor_webhook._decrypt)

    lines = [line.rstrip("\n").split("\t") for line in fixture.open()]
    statuses: dict[int, int] = {}

    async def one(fields: list[str]) -> None:
        scope, body = _scope(fields)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            pending = iter(lines)
            for _ in range(200):  # warm up: connections, statement caches
                await one(next(pending))
            for _ in range(rounds):
                batch = [next(pending) for _ in range(deliveries)]
                lanes = [batch[k::concurrency] for k in range(concurrency)]

                async def lane(items: list[list[str]]) -> None:
                    for fields in items:
                        await one(fields)

                rsa_seconds.clear()
                statuses.clear()
                started = time.process_time()
                await asyncio.gather(*(lane(items) for items in lanes))
                cpu = time.process_time() - started
                print(
                    json.dumps(
                        {
                            "cpu_us": cpu / deliveries * 1e6,
                            "rsa_us": sum(rsa_seconds) / max(len(rsa_seconds), 1) * 1e6,
                            "statuses": statuses,
                        }
                    ),
                    flush=True,
                )

    import uvloop

    uvloop.run(main())


# --- the driver ------------------------------------------------------------------------------


def _run_sides(
    args: argparse.Namespace,
    work: Path,
    key_file: Path,
    sessions: Path,
    project_env: dict[str, str],
    floor_env: dict[str, str],
    baseline: Path | None,
) -> dict[str, list[dict[str, Any]]] | None:
    """Each side `--repeat` times, alternating; None when a side failed (said on stderr)."""
    count = args.deliveries * args.rounds + 200
    sides = ("project", "floor", "baseline") if baseline is not None else ("project", "floor")
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for _ in range(args.repeat):
        for side in sides:
            # Made just before each run: the deliveries' Date must be within the 5-minute window.
            fixture = _fixture(
                args.floor_dir, work / side, count, key_file, sessions if side != "floor" else None
            )
            driver = (
                str(baseline / "bench" / "webhook_cpu.py") if side == "baseline" and baseline else __file__
            )
            cmd = [sys.executable, driver, "--side", "floor" if side == "floor" else "project"]
            cmd += ["--fixture", str(fixture)]
            cmd += ["--deliveries", str(args.deliveries), "--concurrency", str(args.concurrency)]
            cmd += ["--rounds", str(args.rounds)]
            out = subprocess.run(
                cmd, env=floor_env if side == "floor" else project_env, capture_output=True, text=True
            )
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return None
            for line in out.stdout.splitlines():
                if line.startswith("{"):
                    result = json.loads(line)
                    if set(result["statuses"]) != {"200"}:
                        print(f"{side}: unexpected statuses {result['statuses']}", file=sys.stderr)
                        return None
                    results[side].append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--floor-dir", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--deliveries", type=int, default=3000, help="deliveries per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per process")
    parser.add_argument("--repeat", type=int, default=3, help="processes per side, alternating")
    parser.add_argument("--baseline-rev", help="also run the project as it was at this git revision")
    parser.add_argument("--side", choices=("project", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--fixture", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args.fixture, args.deliveries, args.concurrency, args.rounds)
        return 0

    # Imported here, not at the top, so that a side's process loads nothing but what it measures.
    sys.path.insert(0, str(ROOT))
    from app.config import normalise_database_url
    from app.devdb import with_database

    server_url = normalise_database_url(
        os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    work = Path(tempfile.mkdtemp(prefix="bench-webhook-cpu-"))
    key_fixture = work / "key"
    _fixture(args.floor_dir, key_fixture, 1, None, None)
    key_file = key_fixture / "merchant_private.pem"
    sessions = work / "sessions.txt"
    sessions.write_text("\n".join(uuid.uuid4().hex for _ in range(200)))
    project_env = {
        **os.environ,
        "DATABASE_URL": with_database(server_url, SCRATCH["project"]),
        "ADMIN_API_KEY": "bench-" + uuid.uuid4().hex,
        "PUBLIC_URL": "http://127.0.0.1:9",
        "STOREFRONT_URL": "http://127.0.0.1:9/",
        "FINTECTURE_APP_ID": APP_ID,
        "FINTECTURE_APP_SECRET": uuid.uuid4().hex,
        "FINTECTURE_PRIVATE_KEY": key_file.read_text(),
        "FINTECTURE_API_URL": "http://127.0.0.1:9",
        "WORKERS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_ENABLED": "false",
    }
    floor_env = {
        **os.environ,
        "PG_DSN": with_database(server_url, SCRATCH["floor"]).replace(
            "postgresql+asyncpg://", "postgresql://"
        ),
        "MERCHANT_KEY": str(key_file),
        "PYTHONPATH": str(args.floor_dir),
    }
    asyncio.run(_prepare(server_url))
    baseline: Path | None = None
    try:
        _migrate(project_env)
        if args.baseline_rev:
            from suite import add_worktree

            baseline = add_worktree(args.baseline_rev, work)
            if not (baseline / "bench" / "webhook_cpu.py").exists():
                print(f"{args.baseline_rev} has no bench/webhook_cpu.py to drive it", file=sys.stderr)
                return 1
        results = _run_sides(args, work, key_file, sessions, project_env, floor_env, baseline)
    finally:
        if baseline is not None:
            from suite import remove_worktree

            remove_worktree(baseline)
        asyncio.run(_drop_scratch(server_url))
        shutil.rmtree(work, ignore_errors=True)
    if results is None:
        return 1
    print(
        f"{args.deliveries} deliveries per round, {args.concurrency} at a time, in-process; "
        "CPU per delivery (µs), median (min-max)"
    )
    print(f"{'side':<9}{'all':>22}{'RSA-OAEP':>22}{'the rest':>22}")
    rest: dict[str, list[float]] = {}
    for side, rows in results.items():
        total = [r["cpu_us"] for r in rows]
        rsa = [r["rsa_us"] for r in rows]
        rest[side] = [r["cpu_us"] - r["rsa_us"] for r in rows]

        def cell(values: list[float]) -> str:
            return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"

        print(f"{side:<9}{cell(total):>22}{cell(rsa):>22}{cell(rest[side]):>22}")
    for other in ("floor", "baseline"):
        if other in rest:
            print(
                f"the rest, project minus {other} (medians): "
                f"{statistics.median(rest['project']) - statistics.median(rest[other]):.0f} µs per delivery"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
