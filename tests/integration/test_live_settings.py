"""Live settings with the real Squid: a running ``egress.Client`` follows the console's switch and
a kubelet-style ConfigMap swap without a restart, and 20 threads keep working while the settings
change 50 times, each request carried out with the snapshot current when it started.

Proxied requests are proven by Squid's access log (plain HTTP: the absolute URL with a unique
path), direct ones by the origin's echo (no ``Via``) and by the log having no line for them.
Fake names reach the origin through Squid's hosts file, or directly through ``resolve``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.support import names
from tests.support.console_server import ServedConsole
from tests.support.kubelet import KubeletMount
from tests.support.origin import FakeOrigin
from tests.support.squid import SquidProxy

import egress
from egress.console.app import bootstrap, create_app
from egress.console.store import Store
from egress.sources import ConsoleSource, FileSource, Snapshot
from egress.transport.clients import DECISION_EXTENSION, SNAPSHOT_EXTENSION

pytestmark = pytest.mark.integration

HOST = names.API_SAAS
SWITCH_DEADLINE = 5.0  # a change is followed within 5 s (README "Live settings")
ADMIN_PASSWORD = "admin-password-for-live-tests"


def document(squid_url: str, enabled: bool) -> dict[str, Any]:
    return {
        "proxy": {"enabled": enabled, "url": squid_url},
        "resolve": {HOST: "127.0.0.1"},  # direct: the fake name goes to the loopback origin
        "deployment": {"kind": "single-vm"},
    }


def unique(tag: str) -> str:
    return f"/{tag}-{uuid.uuid4().hex[:12]}"


def proxied_paths(squid: SquidProxy, mark: int) -> set[str]:
    return {
        "/" + line.url.split("/", 3)[3]
        for line in squid.access_log_lines(since=mark)
        if line.method == "GET" and HOST in line.url
    }


def settle(squid: SquidProxy, origin: FakeOrigin, mark: int) -> None:
    """Wait until a sentinel request through Squid is logged: earlier ones are logged too."""
    path = unique("sentinel")
    with httpx.Client(proxy=squid.http_url, trust_env=False, timeout=10) as sentinel:
        assert sentinel.get(origin.url(names.GOOGLEAPIS, path, tls=False)).status_code == 200
    squid.wait_for_access_log(lambda line: line.url.endswith(path), since=mark, timeout=15)


def follow_until(
    client: egress.Client, origin: FakeOrigin, proxied: bool, tag: str
) -> tuple[float, list[tuple[str, bool]]]:
    """Requests every 50 ms until one goes the ``proxied`` way; (seconds taken, every request
    as (path, went through Squid per the origin's echo))."""
    start = time.monotonic()
    sent: list[tuple[str, bool]] = []
    while time.monotonic() - start < 4 * SWITCH_DEADLINE:
        path = unique(tag)
        response = client.get(origin.url(HOST, path, tls=False))
        assert response.status_code == 200
        via = response.json()["via"] is not None
        assert (response.extensions[DECISION_EXTENSION].route == "proxy") is via
        sent.append((path, via))
        if via is proxied:
            return time.monotonic() - start, sent
        time.sleep(0.05)
    raise AssertionError(f"no request went {'through Squid' if proxied else 'direct'} in time")


def check_switch(
    client: egress.Client,
    squid: SquidProxy,
    origin: FakeOrigin,
    change: Any,
    proxied: bool,
    tag: str,
) -> None:
    mark = squid.access_log_mark()
    change()
    taken, sent = follow_until(client, origin, proxied, tag)
    assert taken < SWITCH_DEADLINE, f"the change took {taken:.1f} s to be followed"

    settle(squid, origin, mark)
    through_squid = proxied_paths(squid, mark)
    assert {path for path, via in sent if via} == through_squid & {path for path, _ in sent}
    if proxied:
        assert sent[-1][0] in through_squid


# -- the console's switch ----------------------------------------------------------------------


@pytest.fixture
def console(tmp_path: Path, squid: SquidProxy) -> Iterator[ServedConsole]:
    seed = tmp_path / "seed.yaml"
    seed.write_text(yaml.safe_dump(document(squid.http_url, False)))
    store = Store(f"sqlite:///{tmp_path / 'egress.db'}")
    bootstrap(store, import_file=str(seed), admin_password=ADMIN_PASSWORD)
    served = ServedConsole(create_app(store, env={}))
    with served:
        yield served
    store.close()


def test_client_follows_the_console_switch_through_squid_and_back(
    console: ServedConsole, squid: SquidProxy, origin: FakeOrigin
) -> None:
    admin = console.token("admin", "operator")

    def flip(enabled: bool) -> None:
        r = httpx.post(
            f"{console.url}/api/v1/settings/switch",
            json={"enabled": enabled},
            headers={"Authorization": f"Bearer {admin}"},
            trust_env=False,
        )
        assert r.status_code == 200, r.text

    with (
        ConsoleSource(console.url, console.token(), env={}) as source,  # default interval
        egress.Client(source=source) as client,
    ):
        _, sent = follow_until(client, origin, proxied=False, tag="start")
        assert len(sent) == 1  # the console's switch starts off: direct
        check_switch(client, squid, origin, lambda: flip(True), proxied=True, tag="on")
        check_switch(client, squid, origin, lambda: flip(False), proxied=False, tag="off")
        check_switch(client, squid, origin, lambda: flip(True), proxied=True, tag="on-again")


# -- a kubelet ConfigMap swap ------------------------------------------------------------------


def test_client_follows_a_configmap_swap_through_squid_and_back(
    tmp_path: Path, squid: SquidProxy, origin: FakeOrigin
) -> None:
    mount = KubeletMount(tmp_path / "settings", yaml.safe_dump(document(squid.http_url, False)))
    with FileSource(mount.path, env={}) as source, egress.Client(source=source) as client:
        follow_until(client, origin, proxied=False, tag="start")
        for enabled in (True, False, True):
            check_switch(
                client,
                squid,
                origin,
                lambda e=enabled: mount.update(yaml.safe_dump(document(squid.http_url, e))),
                proxied=enabled,
                tag=f"swap-{enabled}",
            )


# -- 20 threads, 50 changes --------------------------------------------------------------------


def sockets_to(port: int) -> int:
    """Open TCP connections of this process to loopback ``port`` (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            state = fields[3]
            if remote_port == port and state == "01" and fields[9] in inodes:  # ESTABLISHED
                count += 1
    return count


def test_twenty_threads_while_settings_change_fifty_times(
    tmp_path: Path, squid: SquidProxy, origin: FakeOrigin
) -> None:
    # Four states, in turn: off and on with one spelling of the proxy, then with another (a
    # different proxy URL: the first one's pools are retired while requests are in flight).
    spellings = (squid.http_url, squid.http_url.replace("127.0.0.1", "localhost"))
    assert spellings[0] != spellings[1]
    states = [(spellings[(i // 2) % 2], bool(i % 2)) for i in range(1, 51)]  # each differs
    mount = KubeletMount(tmp_path / "m", yaml.safe_dump(document(spellings[0], False)))
    order: list[Snapshot] = []
    results: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()
    mark = squid.access_log_mark()

    with FileSource(mount.path, interval=0.05, env={}) as source:
        order.append(source.current())
        source.subscribe(order.append)
        with egress.Client(source=source, timeout=30) as client:

            def worker(n: int) -> None:
                while not stop.is_set():
                    path = unique(f"t{n}")
                    before = source.current()
                    try:
                        response = client.get(origin.url(HOST, path, tls=False))
                    except BaseException as exc:
                        failures.append(exc)
                        return
                    after = source.current()
                    used: Snapshot = response.extensions[SNAPSHOT_EXTENSION]
                    with lock:
                        results.append(
                            {
                                "path": path,
                                "status": response.status_code,
                                "via": response.json()["via"] is not None,
                                "route": response.extensions[DECISION_EXTENSION].route,
                                "used": used,
                                "before": before,
                                "after": after,
                            }
                        )

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
            for thread in threads:
                thread.start()
            try:
                for url, enabled in states:
                    current = source.current()
                    mount.update(yaml.safe_dump(document(url, enabled)))
                    deadline = time.monotonic() + 30
                    while source.current() is current:
                        assert time.monotonic() < deadline, "the swap was not seen"
                        time.sleep(0.01)
                    time.sleep(0.05)  # let requests run with this one
            finally:
                stop.set()
                for thread in threads:
                    thread.join(60)
            assert failures == []
            assert len(order) == 51  # the first snapshot and the 50 changes, each seen

            # a last change to other proxy settings, switched off: no request is in flight,
            # so every pool to Squid is closed now, without closing the client
            last = document(spellings[0], False)
            last["proxy"]["verify"] = False
            mount.update(yaml.safe_dump(last))
            deadline = time.monotonic() + 30
            while source.current().settings.proxy.verify:
                assert time.monotonic() < deadline, "the last swap was not seen"
                time.sleep(0.01)
            assert client.get(origin.url(HOST, unique("last"), tls=False)).status_code == 200
            deadline = time.monotonic() + 30
            while sockets_to(squid.http_port) != 0:
                assert time.monotonic() < deadline, "sockets to Squid left open after retirement"
                time.sleep(0.05)

    def position(snapshot: Snapshot) -> int:
        return next(i for i, known in enumerate(order) if known is snapshot)

    settle(squid, origin, mark)
    through_squid = proxied_paths(squid, mark)
    assert len(results) >= 200
    with_each = {id(r["used"]) for r in results}
    assert len(with_each) >= 25  # requests ran under many of the snapshots
    for r in results:
        used = r["used"]
        assert r["status"] == 200
        # the snapshot used was the current one at some moment during the request
        assert position(r["before"]) <= position(used) <= position(r["after"]), r["path"]
        # and the request went where that snapshot's settings said
        expected = "proxy" if used.settings.proxy.enabled else "direct"
        assert r["route"] == expected, r["path"]
        assert r["via"] is used.settings.proxy.enabled, r["path"]
        assert (r["path"] in through_squid) is used.settings.proxy.enabled, r["path"]
