"""A PostgreSQL server owned by a test: started from the installed binaries, restartable, disposable.

Used when no server answers on 127.0.0.1:5432, and by tests that must restart the server or
give it a low `max_connections`, which they must never do to a shared one.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.ports import free_port


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return Path(found[-1]).parent


class ThrowawayPostgres:
    def __init__(self, password: str | None = None, **settings: str | int) -> None:
        """With a password, TCP clients must give it (scram-sha-256); without, the server trusts them."""
        self.bin = _binaries()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sweeper-pg-"))
        self.settings = settings
        self.password = password
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
        auth = ["-A", "trust"]
        if password:
            pwfile = self.dir / "pwfile"
            pwfile.write_text(password + "\n")
            if self._as_postgres:
                shutil.chown(pwfile, "postgres")
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self._run("initdb", "-D", str(self.dir / "data"), *auth, "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        credentials = f"postgres:{self.password}" if self.password else "postgres"
        return f"postgresql://{credentials}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as_postgres, str(self.bin / tool), *args], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += "".join(f" -c {k}={v}" for k, v in self.settings.items())
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
