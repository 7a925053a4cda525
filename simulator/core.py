"""The shared core every provider runs on: one clock, one scheduler, one webhook dispatcher, one
request log and one set of faults.

Providers (`simulator/fintecture/`, `simulator/powens/`) register themselves here. Each one owns
its API paths (`api_prefixes`), its merchant applications, its state and its error format; the
core routes each API call to its provider for logging and fault injection, resets every provider
with `/_sim/reset`, and delivers every provider's webhooks through the same retrying dispatcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from fastapi import Response

from simulator.config import SimulatorConfig
from simulator.faults import Faults
from simulator.scheduler import Scheduler
from simulator.store import RequestLog
from simulator.webhooks import Dispatcher


class Provider(Protocol):
    """What the core needs from a provider plug-in."""

    name: str
    api_prefixes: tuple[str, ...]  # the paths of its API: logged, fault-injected

    def fault_response(self, status: int, headers: Mapping[str, str]) -> tuple[Response, str]:
        """An injected 429/500/503 in the provider's own error format, and its error code."""
        ...

    def request_error(self, exc: Exception) -> Exception | None:
        """A framework error on the provider's API paths (a `RequestValidationError` or an HTTP
        error) as the provider's own exception, or None for the simulator's default shape."""
        ...

    def reset(self) -> None:
        """Forget every payment, token and piece of state (not the configuration)."""
        ...


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.clock = config.clock
        self.requests = RequestLog(config.max_recorded)
        self.scheduler = Scheduler(self.clock)
        self.faults = Faults()
        self.webhooks = Dispatcher(config, self.clock, self.scheduler, self.faults)
        self.providers: list[Provider] = []

    def register(self, provider: Provider) -> None:
        self.providers.append(provider)

    def provider_for(self, path: str) -> Provider | None:
        """The provider whose API serves `path`, if any (the hosted pages and /_sim are no API)."""
        return next((p for p in self.providers if path.startswith(p.api_prefixes)), None)

    # Lifecycle
    async def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.webhooks.close()

    async def reset(self) -> None:
        """Forget payments, tokens, requests, deliveries, faults and scheduled jobs (not the clock)."""
        self.scheduler.clear()
        await self.webhooks.reset()
        self.requests.reset()
        self.faults.clear()
        for provider in self.providers:
            provider.reset()

    def tick(self) -> None:
        """Apply whatever fell due on the clock (expiry, settlement, phases, webhook attempts)."""
        self.scheduler.run_due()

    def advance_clock(self, seconds: float) -> int:
        self.clock.advance(seconds)
        ran = self.scheduler.run_due()
        self.scheduler.wake()
        return ran
