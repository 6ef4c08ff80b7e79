"""Real runtimes reading proxy settings, batched: many destinations per process.

* :class:`NodeWorker`: one long-lived Node process that evaluates PAC files (browser-style
  runtime, every DNS function throws) and reads proxy variables as proxy-from-env does (the
  reader axios and many Node clients use; Debian ``node-proxy-from-env``).
* :class:`NamespacedCurl`: curl run inside a private network namespace (``unshare -n``) against
  a stand-in proxy, so a direct attempt never leaves the machine (see ``netns_curl.py``).
* :func:`python_routes`: CPython's urllib (``ProxyHandler``'s view) and requests, in process,
  with exactly the given variables in ``os.environ`` for the call.

Each process is started on entry and stopped by PID on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import requests.utils

HERE = Path(__file__).parent
PROXY_FROM_ENV = "/usr/share/nodejs/proxy-from-env"
PROXY_VARIABLE_NAMES = frozenset(
    spelling
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy")
    for spelling in (name, name.upper())
)


class _LineWorker:
    """A child process that answers one JSON line with one JSON line."""

    def __init__(self, argv: Sequence[str], what: str) -> None:
        self.what = what
        self._proc: subprocess.Popen[str] | None = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ask(self, job: Mapping[str, Any]) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"{self.what} ended: {stderr[-2000:]}")
        return json.loads(line)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # by PID: this Popen's own child
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> _LineWorker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class NodeWorker(_LineWorker):
    """``node tests/support/node_worker.js``: PAC answers and proxy-from-env routes."""

    def __init__(self) -> None:
        node = shutil.which("node")
        assert node is not None, "node is missing: run scripts/install-system-deps.sh"
        assert Path(PROXY_FROM_ENV, "index.js").exists(), (
            "proxy-from-env is missing: run scripts/install-system-deps.sh (node-proxy-from-env)"
        )
        super().__init__([node, str(HERE / "node_worker.js")], "node worker")

    def pac(self, text: str, cases: Sequence[tuple[str, str]]) -> list[str]:
        """``FindProxyForURL(url, host)`` for each (url, host)."""
        answer = self.ask({"kind": "pac", "pac": text, "cases": [list(c) for c in cases]})
        assert "ok" in answer, answer.get("error")
        return [str(a) for a in answer["ok"]]

    def env_routes(self, env: Mapping[str, str], urls: Sequence[str]) -> list[str]:
        """proxy-from-env's ``getProxyForUrl``: "proxy" when it names a proxy, else "direct"."""
        answer = self.ask({"kind": "env", "env": dict(env), "urls": list(urls)})
        assert "ok" in answer, answer.get("error")
        return [str(a) for a in answer["ok"]]


class NamespacedCurl(_LineWorker):
    """curl in a private network namespace with a stand-in proxy (``netns_curl.py``)."""

    def __init__(self) -> None:
        unshare = shutil.which("unshare")
        assert unshare is not None and shutil.which("curl"), "unshare and curl are needed"
        # root (as here and in CI) can make a network namespace itself; otherwise a user one
        flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
        super().__init__(
            [unshare, *flags, sys.executable, str(HERE / "netns_curl.py")], "curl worker"
        )
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        first = proc.stdout.readline()
        assert first, f"curl worker did not start: {proc.stderr.read() if proc.stderr else ''}"
        self.proxy: str = json.loads(first)["proxy"]

    def routes(
        self, env: Mapping[str, str], urls: Sequence[str], resolve: Sequence[str] = ()
    ) -> list[str]:
        """curl's route per URL with ``env``, the proxy variables pointing at the stand-in."""
        answer = self.ask({"env": dict(env), "urls": list(urls), "resolve": list(resolve)})
        return [str(r) for r in answer["routes"]]


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` holding no proxy variable but those of ``env``, for the duration."""
    saved = {k: v for k, v in os.environ.items() if k in PROXY_VARIABLE_NAMES}
    for name in saved:
        del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        for name in env:
            os.environ.pop(name, None)
        os.environ.update(saved)


def python_routes(env: Mapping[str, str], urls: Sequence[str]) -> dict[str, list[str]]:
    """{"urllib": [...], "requests": [...]}: "proxy" or "direct" per URL, as each reads ``env``.

    urllib: what ``ProxyHandler`` does (a proxy for the scheme, unless ``proxy_bypass`` of
    ``Request(url).host``); requests: ``select_proxy`` over ``get_environ_proxies``.
    """
    out: dict[str, list[str]] = {"urllib": [], "requests": []}
    with _environment(env):
        proxies = urllib.request.getproxies_environment()
        for url in urls:
            scheme = urllib.parse.urlsplit(url).scheme
            host = urllib.request.Request(url).host
            bypass = urllib.request.proxy_bypass_environment(host, proxies)
            out["urllib"].append("proxy" if proxies.get(scheme) and not bypass else "direct")
            chosen = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
            out["requests"].append("proxy" if chosen else "direct")
    return out
