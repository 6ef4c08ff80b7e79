"""The real console app (``egress.console.app.create_app``) served by uvicorn in a thread, on a
loopback port that survives a stop and a start (so a test can take the console down and bring it
back), plus a helper to make API tokens through the console's own service."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from egress.console.service import ConsoleService


class ServedConsole:
    """``app`` on ``http://127.0.0.1:<port>``; :meth:`stop` and :meth:`start` keep the port."""

    def __init__(self, app: Any) -> None:
        self.app = app
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service(self) -> ConsoleService:
        service: ConsoleService = self.app.state.console
        return service

    def token(self, role: str = "read", name: str = "component") -> str:
        """A new API token made by the console itself (as ``POST /api/v1/tokens`` would)."""
        _, text = self.service.create_token(name, role, actor="test", address="")
        return text

    def start(self) -> ServedConsole:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="console", daemon=True
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._sock
        self._server = self._thread = self._sock = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(20)
            assert not thread.is_alive(), "the console thread did not stop"
        if sock is not None:
            sock.close()

    def __enter__(self) -> ServedConsole:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
