"""``egress.tunnel`` without Squid: target parsing, and the CONNECT exchange against small
misbehaving loopback proxies written here (fakes for what a real Squid will not do)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from egress.cli import main
from egress.errors import (
    ProxyAuthRequired,
    ProxyError,
    ProxyUnreachable,
    UnsupportedRoute,
    URLError,
)
from egress.settings import Settings, load_settings_from_mapping
from egress.transport.plan import Planner
from egress.tunnel import Tunnel, decide_target, open_upstream
from egress.warehouses import connect_params


def settings_for(url: str, tunnel: bool = True, **proxy: str) -> Settings:
    return load_settings_from_mapping(
        {"proxy": {"url": url, **proxy}, "tunnel_tcp_warehouses": tunnel}, env={}
    )


@pytest.mark.parametrize(
    ("target", "kind", "route", "warehouse", "authority"),
    [
        ("db.example.com:5432", None, "tunnel", "postgres", "db.example.com:5432"),
        (
            "x.redshift.amazonaws.com:5439",
            None,
            "tunnel",
            "redshift",
            "x.redshift.amazonaws.com:5439",
        ),
        ("db.example.com:6543", "postgres", "tunnel", "postgres", "db.example.com:6543"),
        ("postgresql://u:pw@db.example.com/app", None, "tunnel", "postgres", "db.example.com:5432"),
        ("git.example.com:22", None, "proxy", None, "git.example.com:22"),
    ],
)
def test_decide_target(
    target: str, kind: str | None, route: str, warehouse: str | None, authority: str
) -> None:
    d = decide_target(settings_for("http://proxy:3128"), target, kind)
    assert (d.route, d.warehouse, d.target.authority) == (route, warehouse, authority)


@pytest.mark.parametrize("target", ["db.example.com", "db:port", ":5432", "db:70000"])
def test_decide_target_refuses_what_is_not_host_port(target: str) -> None:
    with pytest.raises(URLError, match=r"is not HOST:PORT; write it as db\.example\.com:5432"):
        decide_target(settings_for("http://proxy:3128"), target)


def test_a_direct_route_gets_no_tunnel() -> None:
    with pytest.raises(UnsupportedRoute, match="is decided direct"):
        Tunnel(settings_for("http://proxy:3128", tunnel=False), "db.example.com:5432")
    off = settings_for("http://proxy:3128", tunnel=False)
    assert connect_params(off, "postgres", "db.example.com", 5432) == {
        "host": "db.example.com",
        "port": 5432,
    }
    with pytest.raises(ValueError, match="kind must be one of postgres, redshift"):
        connect_params(off, "snowflake", "db.example.com", 443)


@pytest.fixture
def fake_proxy() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """A loopback listener that treats each connection with a given function (a misbehaving
    proxy); returns its port."""
    servers: list[socket.socket] = []

    def start(behave: Callable[[socket.socket], None]) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def loop() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=behave, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return int(server.getsockname()[1])

    yield start
    for s in servers:
        s.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_drip_feeding_proxy_hits_the_deadline(fake_proxy: Callable[..., int]) -> None:
    def drip(conn: socket.socket) -> None:
        _read_request(conn)
        for byte in b"HTTP/1.1 200 Connection established\r\n":
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.1)
        conn.close()

    settings = settings_for(f"http://127.0.0.1:{fake_proxy(drip)}")
    d = decide_target(settings, "db.example.com:5432")
    started = time.monotonic()
    with pytest.raises(ProxyError, match=r"gave no complete answer to CONNECT .* within 0\.5 s"):
        open_upstream(d, Planner(settings), timeout=0.5)
    assert time.monotonic() - started < 2


def test_not_http_and_closed(fake_proxy: Callable[..., int]) -> None:
    def garbage(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        conn.close()

    def closes(conn: socket.socket) -> None:
        _read_request(conn)
        conn.close()

    for behave, words in ((garbage, "something that is not HTTP"), (closes, "closed the conn")):
        settings = settings_for(f"http://127.0.0.1:{fake_proxy(behave)}")
        with pytest.raises(ProxyError, match=words):
            open_upstream(decide_target(settings, "db.example.com:5432"), Planner(settings))


def test_auth_sent_and_never_shown(fake_proxy: Callable[..., int], tmp_path: object) -> None:
    seen: list[bytes] = []

    def wants_auth(conn: socket.socket) -> None:
        request = _read_request(conn)
        seen.append(request)
        # a misbehaving proxy echoes what it was sent
        conn.sendall(b"HTTP/1.1 407 " + request.split(b"\r\n")[2][:60] + b"\r\n\r\n")
        conn.close()

    import pathlib

    secret = pathlib.Path(str(tmp_path)) / "pw"
    secret.write_text("s3cret-pw\n")
    secret.chmod(0o600)
    settings = settings_for(
        f"http://127.0.0.1:{fake_proxy(wants_auth)}", username="bob", password_file=str(secret)
    )
    with pytest.raises(ProxyAuthRequired) as excinfo:
        open_upstream(decide_target(settings, "db.example.com:5432"), Planner(settings))
    assert b"Proxy-Authorization: Basic Ym9iOnMzY3JldC1wdw==" in seen[0]
    assert seen[0].startswith(b"CONNECT db.example.com:5432 HTTP/1.1\r\n")
    assert "refused the credentials of user 'bob'" in str(excinfo.value)
    assert "Ym9iOnMzY3JldC1wdw" not in str(excinfo.value)


def test_unreachable_proxy_keeps_the_listener(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    settings = settings_for(f"http://127.0.0.1:{port}")
    with pytest.raises(ProxyUnreachable, match="cannot connect to the proxy"):
        open_upstream(decide_target(settings, "db.example.com:5432"), Planner(settings))
    with Tunnel(settings, "db.example.com:5432") as t:
        for _ in range(3):
            with socket.create_connection((t.host, t.port), timeout=5) as c:
                assert c.recv(1) == b""  # closed after the failed CONNECT
        assert t.failures == 3
    assert sum("cannot connect to the proxy" in r.getMessage() for r in caplog.records) == 3


def test_explain_says_how_a_component_connects(tmp_path: object) -> None:
    import contextlib
    import pathlib

    config = pathlib.Path(str(tmp_path)) / "egress.yaml"
    config.write_text("proxy:\n  url: http://proxy.corp:3128\ntunnel_tcp_warehouses: true\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["explain", "postgresql://db.example.com/app", "--config", str(config)])
    assert code == 0
    assert "note    a component connects its driver to a loopback tunnel" in out.getvalue()
    assert "connect_params(settings, 'postgres', 'db.example.com', 5432)" in out.getvalue()


@pytest.mark.parametrize("splice", [False, True])
def test_copy_echo_half_close_and_early_bytes(
    fake_proxy: Callable[..., int], monkeypatch: pytest.MonkeyPatch, splice: bool
) -> None:
    """A fake proxy that answers 200 plus a greeting in one packet, then echoes until the
    client's end arrives (the half-close passed on), then ends too."""
    import egress.tunnel

    monkeypatch.setattr(egress.tunnel, "SPLICE", splice)

    def echo(conn: socket.socket) -> None:
        with conn:
            _read_request(conn)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\nhello")
            while chunk := conn.recv(1 << 16):
                conn.sendall(chunk)
            conn.shutdown(socket.SHUT_WR)

    settings = settings_for(f"http://127.0.0.1:{fake_proxy(echo)}")
    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB: more than every buffer on the way
    with Tunnel(settings, "db.example.com:5432") as t:
        with socket.create_connection((t.host, t.port), timeout=10) as c:
            got = bytearray()

            def reader() -> None:
                while chunk := c.recv(1 << 20):
                    got.extend(chunk)

            r = threading.Thread(target=reader)
            r.start()
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            r.join(20)
            assert not r.is_alive()
        assert bytes(got) == b"hello" + payload
        assert t.failures == 0


def test_async_with(fake_proxy: Callable[..., int]) -> None:
    import asyncio

    def answers(conn: socket.socket) -> None:
        with conn:
            _read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
            conn.sendall(conn.recv(16))

    settings = settings_for(f"http://127.0.0.1:{fake_proxy(answers)}")

    async def run() -> bytes:
        async with Tunnel(settings, "db.example.com:5432") as t:
            reader, writer = await asyncio.open_connection(t.host, t.port)
            writer.write(b"ping")
            data = await reader.readexactly(4)
            writer.close()
            await writer.wait_closed()
            return data

    assert asyncio.run(run()) == b"ping"
