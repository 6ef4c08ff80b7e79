"""What the data path tells the outside: one log record per decision, metrics, traffic reports.

The transport, the requests adapter, the tunnel and the settings sources call only the functions
here; each is cheap when nobody listens (a request pays a few attribute reads):

- **Logs.** :func:`decision` writes one DEBUG record on the logger ``egress.decision`` per
  distinct decision (off unless that logger is enabled for DEBUG): the first request to a
  destination, and again whenever its route, rule or proxy changes (a settings reload), for up
  to :data:`LOGGED_DESTINATIONS` destinations at a time. A record per request would cost more
  than the request's own client CPU allows (a stdlib record is 10-40 µs; a keep-alive HTTPS
  request through a proxy is about 450 µs), and says nothing new. :func:`hop_failure` writes
  one WARNING per failed hop. Each record carries ``extra`` fields (``route``, ``rule``,
  ``host``, ``port``, ``proxy`` with its password masked; failures add ``kind`` and ``hop``) for
  JSON log formatters, and a readable message. No URL path, query or password is ever logged.
- **Metrics.** With ``prometheus_client`` installed (``pip install egress[metrics]``) the counters
  below are kept in its default registry, created on the first event (so ``import egress`` stays
  light); :func:`enable_metrics` picks another registry, :func:`disable_metrics` turns them off.
  Labels hold only bounded values: routes, rule ids (capped at :data:`MAX_RULE_LABELS`), failure
  kinds, source kinds. Hosts are never labels (the traffic report carries them).
- **Sinks.** :func:`add_sink` attaches a :class:`Sink` (e.g. :class:`egress.report.TrafficReporter`)
  that sees every decision and failure of every client in the process.

>>> from egress.settings import Settings
>>> d = Settings.from_proxy("http://127.0.0.1:3128").router().decide("https://api.example.com/x?k=1")
>>> fields(d)
{'route': 'proxy', 'rule': 'default', 'host': 'api.example.com', 'port': 443, \
'proxy': 'http://127.0.0.1:3128'}
>>> FAILURE_NAMES["denied"]
'proxy-denied'
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from egress.errors import EgressTransportError

if TYPE_CHECKING:
    from egress.router import Decision

__all__ = [
    "FAILURE_NAMES",
    "LOG",
    "MAX_RULE_LABELS",
    "Sink",
    "add_sink",
    "decision",
    "disable_metrics",
    "enable_metrics",
    "failed",
    "fields",
    "forget_logged_decisions",
    "hop_failure",
    "kind_of",
    "metrics_enabled",
    "remove_sink",
    "settings_loaded",
    "settings_rejected",
    "tunnel_bytes",
    "tunnel_connection",
]

LOG: Final = logging.getLogger("egress.decision")
LOG.addHandler(logging.NullHandler())  # a library's records: shown only where the app says so
# (without it, Python's last-resort handler would print the WARNINGs of `egress check` to stderr)
_DEBUG: Final = logging.DEBUG
LOGGED_DESTINATIONS: Final = 4096
"""How many destinations' last logged decisions are remembered (then forgotten all at once)."""
_logged: dict[tuple[object, int | None], tuple[str, str, str | None]] = {}

FAILURE_NAMES: Final[Mapping[str, str]] = {
    "unreachable": "proxy-unreachable",
    "pool": "proxy-pool-timeout",
    "tls": "proxy-tls-failed",
    "denied": "proxy-denied",
    "auth": "proxy-auth-required",
    "proxy": "proxy-error",
    "route": "unsupported-route",
    "intercepted": "tls-intercepted",
    "origin": "origin-error",
}
"""A failure kind (the ``HopFailure`` kinds of :mod:`egress.transport.failures`, plus ``origin``
for the destination's own failures) -> the name traffic reports and the console show; the proxy's
ones are spelt as ``egress check`` spells its statuses."""

MAX_RULE_LABELS: Final = 200
"""Distinct (route, rule) label pairs kept per metric; later rules are counted as ``other``."""


class Sink(Protocol):
    """Whatever wants every decision and failure of this process (a traffic reporter)."""

    def on_decision(self, decision: Decision) -> None: ...

    def on_failure(self, kind: str, decision: Decision) -> None: ...


# ---------------------------------------------------------------------------------------------
# The calls of the data path.


def fields(d: Decision) -> dict[str, Any]:
    """The ``extra`` fields of a decision's records: bounded, masked, no path or query."""
    target = d.target
    return {
        "route": d.route,
        "rule": d.rule,
        "host": target.host_text,
        "port": target.port,
        "proxy": d.proxy,
    }


def decision(d: Decision) -> None:
    """One request (or tunnel connection) is about to be carried out as ``d`` decides."""
    if LOG.isEnabledFor(_DEBUG):
        target = d.target
        key = (target.host, target.port)
        said = (d.route, d.rule, d.proxy)
        if _logged.get(key) != said:
            _log_decision(d, key, said)
    _metrics.decision(d)
    for sink in _sinks:
        sink.on_decision(d)


def forget_logged_decisions() -> None:
    """Log the next decision for every destination again (a test, or after changing handlers)."""
    _logged.clear()


def _log_decision(
    d: Decision, key: tuple[object, int | None], said: tuple[str, str, str | None]
) -> None:
    if len(_logged) >= LOGGED_DESTINATIONS:
        _logged.clear()
    _logged[key] = said
    target = d.target
    LOG.debug(
        "%s %s:%s via %s (rule %s)",
        d.route,
        target.host_text,
        target.port,
        d.proxy or "no proxy",
        d.rule,
        extra=fields(d),
    )


def hop_failure(
    kind: str, d: Decision, exc: BaseException | None = None, *, log: bool = True
) -> None:
    """A request decided ``d`` failed; ``kind`` is the ``HopFailure`` kind (or ``origin``).

    ``log=False`` when the caller has logged it already (the tunnel, on ``egress.tunnel``): one
    line per failure.
    """
    hop = getattr(exc, "hop", None) or ("origin" if kind == "origin" else "")
    if log and LOG.isEnabledFor(logging.WARNING):
        if isinstance(exc, EgressTransportError):
            why = str(exc)  # egress's own message: masked, and the fix included
        elif exc is not None:
            from egress.transport.failures import reason_of

            why = f"{type(exc).__name__}: {reason_of(exc)}"
        else:
            why = FAILURE_NAMES.get(kind, kind)
        target = d.target
        LOG.warning(
            "%s %s:%s failed (%s): %s",
            d.route,
            target.host_text,
            target.port,
            kind,
            why,
            extra={**fields(d), "kind": kind, "hop": hop},
        )
    _metrics.failure(kind, d)
    for sink in _sinks:
        sink.on_failure(kind, d)


def kind_of(error: BaseException, classes: Mapping[Any, type[BaseException]]) -> str:
    """The failure kind of an error raised from ``classes`` (a client's error-class map, e.g.
    ``HTTPX_ERRORS``), by its exact class; ``origin`` for any other error."""
    for kind, cls in classes.items():
        if type(error) is cls:
            return str(kind)
    return "origin"


def failed(
    d: Decision,
    error: BaseException,
    classes: Mapping[Any, type[BaseException]],
    *,
    log: bool = True,
) -> None:
    """:func:`hop_failure` for ``error``, its kind found by :func:`kind_of`."""
    hop_failure(kind_of(error, classes), d, error, log=log)


def tunnel_bytes(n_up: int, n_down: int) -> None:
    """The tunnel carried ``n_up`` bytes towards the target and ``n_down`` back."""
    _metrics.tunnel_bytes(n_up, n_down)


def tunnel_connection(opened: bool) -> None:
    """A tunnel connection was set up through the proxy (``True``) or has ended (``False``)."""
    _metrics.tunnel_connection(opened)


def settings_loaded(source_kind: str, version: str) -> None:
    """A settings source (``file``, ``console``, ``static``) now serves ``version``."""
    _metrics.settings(source_kind, version, None)


def settings_rejected(source_kind: str, reason: str) -> None:
    """A settings source refused new settings and kept the last good ones (``reason`` is for
    people; only the count reaches the metrics)."""
    _metrics.settings(source_kind, None, reason)


# ---------------------------------------------------------------------------------------------
# Sinks.

_sinks: tuple[Sink, ...] = ()
_sinks_lock = threading.Lock()


def add_sink(sink: Sink) -> None:
    """Let ``sink`` see every decision and failure from now on (once, however often added)."""
    global _sinks
    with _sinks_lock:
        if sink not in _sinks:
            _sinks = (*_sinks, sink)


def remove_sink(sink: Sink) -> None:
    """Stop telling ``sink``; nothing happens when it was not added."""
    global _sinks
    with _sinks_lock:
        _sinks = tuple(s for s in _sinks if s is not sink)


# ---------------------------------------------------------------------------------------------
# Metrics.


class _Off:
    """Metrics off (or prometheus_client missing): every call does nothing."""

    def decision(self, d: Decision) -> None:
        pass

    def failure(self, kind: str, d: Decision) -> None:
        pass

    def tunnel_bytes(self, n_up: int, n_down: int) -> None:
        pass

    def tunnel_connection(self, opened: bool) -> None:
        pass

    def settings(self, source: str, version: str | None, reason: str | None) -> None:
        pass


class _Metrics(_Off):
    """The counters, in one registry; children per label set are made once and kept."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(name, doc, labels, registry=registry)

        self._decisions = counter(
            "egress_decisions", "Routing decisions, by route and rule", ("route", "rule")
        )
        self._requests = counter("egress_requests", "Requests carried out, by route", ("route",))
        self._failures = counter(
            "egress_request_failures",
            "Failed requests, by failure kind (the hop) and route",
            ("kind", "route"),
        )
        self._bytes = counter(
            "egress_tunnel_bytes", "Bytes carried by tunnels (up: to the target)", ("direction",)
        )
        self._opened = counter("egress_tunnel_connections", "Tunnel connections set up")
        self._open = Gauge(
            "egress_tunnel_connections_open", "Tunnel connections open now", registry=registry
        )
        self._reloads = counter(
            "egress_settings_reloads",
            "Settings loaded or rejected, by source kind",
            ("source", "outcome"),
        )
        self._version = Gauge(
            "egress_settings_version_info",
            "The settings version in use (value 1), per source kind",
            ("source", "version"),
            registry=registry,
        )
        self._loaded_at = Gauge(
            "egress_settings_loaded_timestamp_seconds",
            "When the settings in use were loaded, per source kind",
            ("source",),
            registry=registry,
        )
        self._up = self._bytes.labels("up")
        self._down = self._bytes.labels("down")
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._failure_children: dict[tuple[str, str], Any] = {}
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()

    def _pair(self, route: str, rule: str) -> tuple[Any, Any]:
        with self._lock:
            pair = self._children.get((route, rule))
            if pair is None:
                shown = rule if len(self._children) < MAX_RULE_LABELS else "other"
                pair = (self._decisions.labels(route, shown), self._requests.labels(route))
                self._children[(route, rule)] = pair
            return pair

    def decision(self, d: Decision) -> None:
        pair = self._children.get((d.route, d.rule)) or self._pair(d.route, d.rule)
        pair[0].inc()
        pair[1].inc()

    def failure(self, kind: str, d: Decision) -> None:
        key = (kind if kind in FAILURE_NAMES else "origin", d.route)
        child = self._failure_children.get(key)
        if child is None:
            child = self._failure_children[key] = self._failures.labels(*key)
        child.inc()

    def tunnel_bytes(self, n_up: int, n_down: int) -> None:
        if n_up:
            self._up.inc(n_up)
        if n_down:
            self._down.inc(n_down)

    def tunnel_connection(self, opened: bool) -> None:
        if opened:
            self._opened.inc()
            self._open.inc()
        else:
            self._open.dec()

    def settings(self, source: str, version: str | None, reason: str | None) -> None:
        source = source if len(source) <= 40 else source[:40]
        if version is None:
            self._reloads.labels(source, "rejected").inc()
            return
        self._reloads.labels(source, "loaded").inc()
        with self._lock:
            old = self._versions.get(source)
            if old is not None and old != version:
                self._version.remove(source, old)
            self._versions[source] = version[:200]
            self._version.labels(source, version[:200]).set(1)
        self._loaded_at.labels(source).set(time.time())


class _Lazy(_Off):
    """Until the first event: then metrics go on when prometheus_client can be imported."""

    def _resolve(self) -> _Off:
        global _metrics
        with _state_lock:
            if _metrics is self:
                try:
                    import prometheus_client
                except ImportError:
                    _metrics = _Off()
                else:
                    _metrics = _registered(prometheus_client.REGISTRY)
            return _metrics

    def decision(self, d: Decision) -> None:
        self._resolve().decision(d)

    def failure(self, kind: str, d: Decision) -> None:
        self._resolve().failure(kind, d)

    def tunnel_bytes(self, n_up: int, n_down: int) -> None:
        self._resolve().tunnel_bytes(n_up, n_down)

    def tunnel_connection(self, opened: bool) -> None:
        self._resolve().tunnel_connection(opened)

    def settings(self, source: str, version: str | None, reason: str | None) -> None:
        self._resolve().settings(source, version, reason)


_state_lock = threading.RLock()
_metrics: _Off = _Lazy()
_by_registry: weakref.WeakKeyDictionary[Any, _Metrics] = weakref.WeakKeyDictionary()
"""One set of counters per registry (a registry refuses the same name twice), keyed by the
registry itself: an ``id()`` key handed a new registry the counters of a collected one that had
had the same address, so its metrics were missing."""


def _registered(registry: Any) -> _Metrics:
    found = _by_registry.get(registry)
    if found is None:
        found = _by_registry[registry] = _Metrics(registry)
    return found


def enable_metrics(registry: Any = None) -> bool:
    """Keep metrics in ``registry`` (prometheus_client's default one when None). False, and
    metrics stay off, when prometheus_client is not installed."""
    global _metrics
    try:
        import prometheus_client
    except ImportError:
        with _state_lock:
            _metrics = _Off()
        return False
    with _state_lock:
        _metrics = _registered(prometheus_client.REGISTRY if registry is None else registry)
    return True


def disable_metrics() -> None:
    """Stop counting (the counters already made stay in their registry, unchanged)."""
    global _metrics
    with _state_lock:
        _metrics = _Off()


def metrics_enabled() -> bool:
    """Whether events are counted now (before the first event: whether they will be)."""
    if isinstance(_metrics, _Lazy):
        import importlib.util

        try:
            return importlib.util.find_spec("prometheus_client") is not None
        except ValueError:  # in sys.modules as None: blocked
            return False
    return isinstance(_metrics, _Metrics)
