"""``egress console``: open the store, set up the first run, and serve the app with uvicorn.

The listening socket is bound before anything is printed, so a port in use fails with one
sentence and no password is shown for a console that never started.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from egress.errors import UsageError
from egress.redact import mask_url

DEFAULT_DB = "sqlite:///var/egress.db"
"""The store when ``--db`` is not given: ``./var/egress.db`` under the working directory."""
DEFAULT_PORT = 8080
PASSWORD_VARIABLE = "EGRESS_ADMIN_PASSWORD"


class ListenError(UsageError):
    """The console's address cannot be bound (in use, not local, not allowed)."""


@dataclass(frozen=True)
class ServeOptions:
    db: str = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    import_file: str | None = None


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or :class:`ListenError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"{where} is already in use", "stop what listens there, or pass --port P"
            ) from exc
        raise ListenError(
            f"cannot listen on {where}: {exc.strerror or exc}",
            "pass --host with an address of this machine (default 127.0.0.1)",
        ) from exc
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    return f"http://{shown_host}:{port}/"


def serve(options: ServeOptions, *, env: Mapping[str, str], say: Callable[[str], None]) -> int:
    """Run the console until stopped (Ctrl-C or SIGTERM); returns the exit code (0)."""
    import uvicorn

    from egress.console.app import bootstrap, create_app
    from egress.console.store import Store, database_url
    from egress.settings import load_yaml

    if options.import_file is not None:
        load_yaml(options.import_file, env=env)  # refuse a bad file before anything starts
    url = database_url(options.db)
    store = Store(url)
    store.migrate()
    sock = bind(options.host, options.port)
    try:
        given = env.get(PASSWORD_VARIABLE) or None
        generated = bootstrap(store, import_file=options.import_file, admin_password=given)
        say(f"egress console: {url_of(sock)}")
        say(f"  store: {mask_url(url)}")
        first_run = generated is not None
        if first_run and given is None:
            say(f"  first run: sign in as admin with this password (shown once): {generated}")
        elif first_run:
            say(f"  first run: sign in as admin with the password from {PASSWORD_VARIABLE}")
        if first_run and options.import_file is not None:
            say(f"  settings: imported {options.import_file} as version 1")
        elif options.import_file is not None:
            say(
                f"  --import ignored: the store already holds settings (version "
                f"{store.current_number()}); change them on the Settings page or the API"
            )
        say("  stop with Ctrl-C")
        app = create_app(store, env=env)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        store.close()
    return 0
