"""`checkout serve` in a child process: a service a test can `kill -9` and start again on the same
port, whose whole output (structured log and access log) lands in one file the test can read.

The child gets only the settings the test gives it: every variable a settings class reads is
removed from the inherited environment, and it runs in an empty directory (no `.env`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port
from tests.support.settings_env import every_env_name


class ServiceProcess:
    def __init__(self, settings_env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="checkout-service-"))
        self.log_path = self.workdir / "service.log"
        inherited = {k: v for k, v in os.environ.items() if k.upper() not in every_env_name()}
        self.env = {**inherited, "PUBLIC_URL": self.url, **settings_env}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    async def start(self, timeout: float = 30.0) -> None:
        """Start the service and wait until it answers /healthz."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not start within {timeout}s:\n{self.log()}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """`kill -9`: no shutdown, no clean-up, leases and transactions left as they were."""
        assert self.process is not None and self.process.poll() is None, "not running"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        """Stop the service if it runs: SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
