"""Real servers the tests start themselves: PostgreSQL on 127.0.0.1 from Debian's package.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the
package creates; its data dir is a fresh temporary one, removed afterwards.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    """The newest installed server's bin dir (`/usr/lib/postgresql/<version>/bin`)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: p.split("/")[4])
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    url: str
    """`postgresql+psycopg://storygen:<password>@127.0.0.1:<port>/postgres`"""
    password: str


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server with a password (so tests can check it never leaks)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries absent (apt-get install postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="storygen-pg-"))
    password = secrets.token_hex(12)
    (base / "password").write_text(password)
    if as_user:
        shutil.chown(base, "postgres")
        shutil.chown(base / "password", "postgres")
    data, port = base / "data", free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "storygen"]
        + ["-A", "scram-sha-256", f"--pwfile={base / 'password'}"],
        **run,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=50"
    pg_ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-o", options, "-l", str(base / "log"), "-w", "start"], **run)
    try:
        yield PostgresServer(
            f"postgresql+psycopg://storygen:{password}@127.0.0.1:{port}/postgres", password
        )
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
