"""A second service process for tests, reduced to its inbox worker: drains the inbox once with
settings read from the environment (DATABASE_URL, FINTECTURE_*, INBOX_LEASE_SECONDS, ...).

Run as `python -m tests.support.inbox_worker`; tests kill it to show what a crash leaves behind.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.payments.inbox import InboxProcessor
from app.providers import registry


async def main() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = create_engine(settings.database_url, pool_size=2)
    async with httpx.AsyncClient(timeout=settings.provider_timeout_seconds) as http:
        providers = registry.build_providers(settings, registry.load_provider_settings(), http)
        processor = InboxProcessor(
            create_sessionmaker(engine),
            providers,
            max_attempts=settings.inbox_max_attempts,
            concurrency=settings.inbox_concurrency,
            lease=timedelta(seconds=settings.inbox_lease_seconds),
        )
        print("draining", flush=True)
        result = await processor.drain()
        print(f"drained {result}", flush=True)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
