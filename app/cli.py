"""The `checkout` command: serve, migrate, demo, simulator, keys, sweep, events."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from app import logging_setup
from app.config import ConfigurationError, Settings

if TYPE_CHECKING:
    from app.events.schemas import InboundReplayRequest

ROOT = Path.cwd()


def _load_settings() -> Settings:
    """Core and provider settings from the environment, checked: ConfigurationError or
    ValueError (pydantic's) with the reasons otherwise."""
    from app.providers import registry

    settings = Settings()
    registry.check(settings, registry.load_provider_settings())
    return settings


def _settings() -> Settings:
    """The checked settings; exits with the reasons otherwise."""
    try:
        settings = _load_settings()
    except (ConfigurationError, ValueError) as exc:
        sys.exit(str(exc))
    logging_setup.configure(settings.log_level)
    return settings


def migrate(database_url: str) -> None:
    from alembic import command

    from app.migrations_info import alembic_config

    command.upgrade(alembic_config(database_url), "head")


def cmd_migrate(_: argparse.Namespace) -> None:
    from app.migrations_info import head_revision

    migrate(_settings().database_url)
    logging_setup.get_logger("checkout.migrate").info("database_migrated", revision=head_revision())


def _refuse_to_start(command: str, reason: str) -> NoReturn:
    """One JSON line on stderr saying why `command` (serve, work) does not start (`<command>_refused`),
    and a non-zero exit."""
    logging_setup.get_logger(f"checkout.{command}").error(f"{command}_refused", reason=reason)
    sys.exit(1)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from app import preflight
    from app.server import server_config

    if args.check:
        try:
            settings = _load_settings()
        except (ConfigurationError, ValueError) as exc:
            print(f"problem: {exc}")
            sys.exit(1)
        logging_setup.configure(settings.log_level)
    else:
        settings = _settings()
    if args.migrate and not args.check:
        migrate(settings.database_url)
    report = asyncio.run(preflight.wait_for_database(settings, args.workers, args.wait_for_db))
    log = logging_setup.get_logger("checkout.serve")
    for warning in report.warnings:
        log.warning("serve_warning", reason=warning)
    if args.check:
        # What is wrong, one line each on stdout, then the verdict as the exit status.
        for problem in report.problems:
            print(f"problem: {problem}")
        for warning in report.warnings:
            print(f"warning: {warning}")
        if report.problems:
            sys.exit(1)
        print(
            f"ok: settings valid, database reachable and at migration {report.migration}, "
            f"{args.workers} process(es) x pool of {settings.database_pool_size}"
        )
        return
    if report.problems:
        _refuse_to_start("serve", "; ".join(report.problems))
    # LOG_LEVEL=WARNING also silences the access log (uvicorn logs each request at INFO).
    log_level = settings.log_level.lower()
    options = {"host": args.host, "port": args.port, "proxy_headers": True, "log_level": log_level}
    if args.workers == 1:
        from app.main import create_app

        uvicorn.Server(server_config(create_app(settings), **options)).run()
        return
    # Each process builds its own app, engine and pool from the environment, and runs its own
    # inbox worker, sweeper and dispatcher: they share work through row claims (SKIP LOCKED).
    config = server_config("app.main:create_app", factory=True, workers=args.workers, **options)
    # ...and their metrics through one directory, named before they start so they inherit it.
    from app import metrics

    metrics.prepare_multiprocess_dir()
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def cmd_demo(args: argparse.Namespace) -> None:
    from app.demo import run_demo

    run_demo(host=args.host, port=args.port, simulator_port=args.simulator_port, data_dir=ROOT / ".data")


def cmd_simulator(args: argparse.Namespace) -> None:
    from simulator.runner import run_standalone

    run_standalone(host=args.host, port=args.port, config_path=args.config)


def cmd_keys(args: argparse.Namespace) -> None:
    from app.providers.fintecture.signing import generate_key_pair_pem

    private_pem, public_pem = generate_key_pair_pem()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / "fintecture-private.pem", out / "fintecture-public.pem"
    private_path.write_bytes(private_pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(public_pem)
    print(f"private key: {private_path} (set FINTECTURE_PRIVATE_KEY_FILE to it)")
    print(f"public key:  {public_path} (upload it to the provider's console)")


async def _sweep_once(settings: Settings) -> dict[str, int]:
    """One sweeper pass and inbox drain, with this process's own engine and providers."""
    from app.db import create_engine, create_sessionmaker
    from app.payments.workers import PaymentWorkers
    from app.providers import registry
    from app.providers.http import provider_http_client

    engine = create_engine(settings.database_url, pool_size=2)
    async with provider_http_client(settings.provider_timeout_seconds) as http:
        providers = registry.build_providers(settings, registry.load_provider_settings(), http)
        workers = PaymentWorkers(settings, create_sessionmaker(engine), providers)
        try:
            swept = await workers.sweep()
            drained = await workers.drain_inbox()
        finally:
            await engine.dispose()
    return {
        "sessions_checked": swept.claimed,
        "refunds_checked": swept.refunds_claimed,
        "payouts_checked": swept.payouts_claimed,
        "orders_changed": swept.changed,
        "provider_errors": swept.errors,
        "reservations_abandoned": swept.abandoned,
        "events_applied": drained.applied,
        "events_retried": drained.retried,
        "events_given_up": drained.gave_up,
    }


async def _work(settings: Settings) -> None:
    """Everything `serve` runs beside the API (the inbox worker, the sweeper, the outbox dispatcher),
    without the API, until SIGTERM or SIGINT. It is the application's own start-up and shutdown, so
    the work is the same as in a serving process with WORKERS_ENABLED=true."""
    import signal

    from app.main import create_app

    app = create_app(settings.model_copy(update={"workers_enabled": True}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log = logging_setup.get_logger("checkout.work")
    async with app.router.lifespan_context(app):
        log.info("work_started", inbox_concurrency=settings.inbox_concurrency)
        await stop.wait()
        log.info("work_stopping")
    log.info("work_stopped")


def cmd_work(args: argparse.Namespace) -> None:
    from app import preflight

    settings = _settings()
    report = asyncio.run(preflight.wait_for_database(settings, 1, args.wait_for_db))
    if report.problems:
        _refuse_to_start("work", "; ".join(report.problems))
    asyncio.run(_work(settings))


def cmd_sweep(_: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(_sweep_once(_settings()))))


async def _replay_inbound(settings: Settings, criteria: InboundReplayRequest) -> list[int]:
    from app.db import create_engine, create_sessionmaker, transaction
    from app.events import service

    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with transaction(create_sessionmaker(engine)) as db:
            return await service.replay_inbound(db, criteria)
    finally:
        await engine.dispose()


def cmd_events_replay(args: argparse.Namespace) -> None:
    """Make stored provider webhooks due again; a running inbox worker (or `checkout sweep`)
    processes them."""
    from pydantic import ValidationError

    from app.events.schemas import InboundReplayRequest

    try:
        criteria = InboundReplayRequest.model_validate(
            {
                "event_ids": args.ids,
                "provider": args.provider,
                "received_from": args.since,
                "received_to": args.until,
                "outcome": args.outcome,
            }
        )
    except ValidationError as exc:
        sys.exit("; ".join(str(error["msg"]) for error in exc.errors()))
    ids = asyncio.run(_replay_inbound(_settings(), criteria))
    print(json.dumps({"replayed": len(ids), "event_ids": ids}))


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


class _Parser(argparse.ArgumentParser):
    """A usage error is a JSON line on stderr too."""

    def error(self, message: str) -> NoReturn:
        logging_setup.get_logger("checkout").error("usage_error", reason=message, usage=self.format_usage())
        sys.exit(2)


def _run(args: argparse.Namespace) -> None:
    """Run the command; a failure it did not log (`sys.exit("reason")`, an exception) is one JSON
    line on stderr and a non-zero exit, never plain text or a bare traceback."""
    log = logging_setup.get_logger("checkout")
    try:
        args.func(args)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            log.error("command_failed", command=args.command, reason=exc.code)
            raise SystemExit(1) from None
        raise
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        log.error("command_failed", command=args.command, exc_info=exc)
        raise SystemExit(1) from None


def _add_wait_for_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-for-db",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the database to be reachable and migrated (default: do not wait)",
    )


def main(argv: list[str] | None = None) -> None:
    # JSON from the first line on (settings, read next, may set another level).
    logging_setup.configure(os.environ.get("LOG_LEVEL", "INFO"))
    parser = _Parser(prog="checkout", description="Pay-by-bank checkout backend")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the API (settings from the environment)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=_positive_int, default=1, help="server processes (default 1)")
    p.add_argument("--migrate", action="store_true", help="apply migrations first")
    _add_wait_for_db(p)
    p.add_argument(
        "--check", action="store_true", help="check the settings and the database, print what is wrong, exit"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "work",
        help="run the inbox worker, the sweeper and the outbox dispatcher without the API "
        "(beside `serve` processes started with WORKERS_ENABLED=false)",
    )
    _add_wait_for_db(p)
    p.set_defaults(func=cmd_work)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="embedded PostgreSQL + provider simulator + storefront, on localhost")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--simulator-port", type=int, default=8100)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulator", help="run the provider simulator on its own")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--config", type=Path, help="JSON file registering merchant applications")
    p.set_defaults(func=cmd_simulator)

    p = sub.add_parser("keys", help="generate an RSA key pair for request signing and webhooks")
    p.add_argument("--out", default=".", help="directory to write the PEM files to")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("sweep", help="run one sweeper pass (sync stale sessions, drain the inbox)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("events", help="work on stored events")
    events = p.add_subparsers(dest="events_command", required=True)
    p = events.add_parser(
        "replay",
        help="process stored provider webhooks again: the inbox worker re-reads their payments from "
        "the provider, and the writer applies only what is new",
    )
    p.add_argument("--id", dest="ids", type=int, action="append", help="an inbox event id (repeatable)")
    p.add_argument("--provider", help="only this provider's events")
    p.add_argument("--since", help="received at or after this instant (ISO 8601 with a zone)")
    p.add_argument("--until", help="received before this instant (ISO 8601 with a zone)")
    p.add_argument("--outcome", choices=["applied", "gave_up"], help="only events with this outcome")
    p.set_defaults(func=cmd_events_replay)

    args = parser.parse_args(argv)
    _run(args)


if __name__ == "__main__":
    main()
