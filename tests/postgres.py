"""A real PostgreSQL server on loopback for the tests and benchmarks: started on a free port, torn down after.

Uses the distribution's server binaries (Debian's ``postgresql`` package, which ``.ci/run`` installs
when absent). PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
user. Password authentication over TCP, so that wrong credentials can be tested for real.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["PostgresServer", "server_binaries"]

USER = "memfront"
PASSWORD = "memfront-test-password"


def server_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``.

    Raises:
        RuntimeError: If no PostgreSQL server is installed.
    """
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if versions:
        return Path(versions[-1]).parent
    raise RuntimeError("no PostgreSQL server installed: apt-get install postgresql (as .ci/run does)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One throwaway cluster: ``start()``, ``new_database()`` per test, ``stop()``."""

    def __init__(self) -> None:
        self.bin = server_binaries()
        # Not under pytest's temp folder: that is private to root, and the server may run as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="memfront-pg-"))
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> PostgresServer:
        data = self.folder / "data"
        password_file = self.folder / "password"
        password_file.write_text(PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(self.folder, "postgres")
            shutil.chown(password_file, "postgres")
        self._run(
            "initdb", "-D", str(data), "-U", USER, f"--pwfile={password_file}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(data), "-l", log, "-o", options, "-w", "start")
        return self

    def url(self, database: str = "postgres", *, password: str = PASSWORD) -> str:
        """A SQLAlchemy URL for ``database`` as the test user."""
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Creates an empty database and returns its URL."""
        import psycopg

        name = f"study_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
