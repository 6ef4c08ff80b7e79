"""A throwaway PostgreSQL server on loopback, TLS on, trust auth, stopped by ``pg_ctl``.

``initdb`` into a private temp dir, ``pg_ctl start`` on a free 127.0.0.1 port with the unix
socket inside that dir (``-k``), TLS with a leaf from the origin CA (clients verify it with
``origin-ca.pem``; it names ``pg.example-db.test``). When run as root the server runs as user
``postgres`` (``runuser``), since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support.ports import LOOPBACK, free_port, wait_until
from tests.support.processes import pid_alive

#: The 8-byte SSLRequest packet (length 8, code 80877103); a TLS-enabled server answers b"S".
SSL_REQUEST = struct.pack("!II", 8, 80877103)


class PostgresError(RuntimeError):
    """initdb, start or stop failed."""


def find_bin_dir() -> Path:
    """``/usr/lib/postgresql/<newest>/bin`` (Debian layout)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not candidates:
        raise PostgresError(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
            "run scripts/install-system-deps.sh"
        )
    return Path(candidates[-1]).parent


def ssl_request_answer(host: str, port: int, timeout: float = 5.0) -> bytes:
    """Send a PostgreSQL SSLRequest to ``host:port`` and return the one-byte answer."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(SSL_REQUEST)
        return sock.recv(1)


class PostgresServer:
    """One PostgreSQL cluster in a temp dir. ``start()``/``stop()``; ``close()`` deletes it."""

    def __init__(
        self,
        *,
        cert_file: str | Path,
        key_file: str | Path,
        port: int | None = None,
        user: str = "postgres",
        dbname: str = "postgres",
        start_timeout: float = 30.0,
    ) -> None:
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.user = user
        self.dbname = dbname
        self.start_timeout = start_timeout
        self.bin_dir = find_bin_dir()
        self._cert_file = Path(cert_file)
        self._key_file = Path(key_file)
        self._as_root = os.geteuid() == 0
        self.workdir = Path(tempfile.mkdtemp(prefix="egress-pg-"))
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "server.log"
        self.pid: int | None = None
        self._initialised = False

    @property
    def dsn(self) -> str:
        """libpq conninfo for a direct loopback connection (no TLS requirement)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    @property
    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb (first time only), ``pg_ctl start -w``, then check TLS answers ``S``."""
        if self.running:
            raise PostgresError(f"postgres is already running (pid {self.pid})")
        if not self._initialised:
            self._init_cluster()
        options = " ".join(
            [
                f"-c listen_addresses={self.host}",
                f"-p {self.port}",
                f"-k {self.workdir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c ssl=on",
                f"-c ssl_cert_file={self.workdir / 'server.crt'}",
                f"-c ssl_key_file={self.workdir / 'server.key'}",
            ]
        )
        result = self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "-o",
                options,
                "start",
            ],
            timeout=self.start_timeout + 10,
        )
        if result.returncode != 0:
            raise PostgresError(
                f"pg_ctl start failed (exit {result.returncode}):\n{result.stdout}\n"
                f"server.log tail:\n{self.log_tail()}"
            )
        self.pid = self._postmaster_pid()
        try:
            wait_until(
                lambda: _answers_ssl(self.host, self.port),
                timeout=self.start_timeout,
                what=f"postgres on {self.host}:{self.port} answering SSLRequest with 'S'",
                alive=lambda: self.pid is not None and pid_alive(self.pid),
            )
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise PostgresError(f"{exc}\nserver.log tail:\n{self.log_tail()}") from exc
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """``pg_ctl stop -m fast`` and make sure the postmaster PID is gone (SIGKILL if not)."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ],
                timeout=timeout + 10,
            )
        try:
            wait_until(lambda: not pid_alive(pid), timeout=timeout, what=f"postmaster {pid} exit")
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), timeout=10, what=f"postmaster {pid} exit")

    def close(self) -> None:
        """Stop the server and delete the cluster."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (FileNotFoundError, PermissionError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -------------------------------------------------------------------------

    def _init_cluster(self) -> None:
        self.workdir.chmod(0o755)
        shutil.copyfile(self._cert_file, self.workdir / "server.crt")
        shutil.copyfile(self._key_file, self.workdir / "server.key")
        (self.workdir / "server.crt").chmod(0o644)
        (self.workdir / "server.key").chmod(0o600)  # postgres refuses a group/world-readable key
        if self._as_root:
            owner = pwd.getpwnam("postgres")
            for path in (self.workdir, self.workdir / "server.crt", self.workdir / "server.key"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        result = self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=120,
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb failed (exit {result.returncode}):\n{result.stdout}")
        self._initialised = True

    def _run(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            argv,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _postmaster_pid(self) -> int:
        first_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first_line.strip())


def _answers_ssl(host: str, port: int) -> bool:
    try:
        return ssl_request_answer(host, port, timeout=1.0) == b"S"
    except OSError:
        return False
