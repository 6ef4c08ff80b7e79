"""Following a settings source: which snapshot a request starts in, and when old pools close.

Shared by ``egress.Client``/``AsyncClient`` (httpx) and ``requests_session`` (requests), so it
imports neither library. A *generation* is one snapshot of the source and the transport planned
from it. Generations whose proxy settings agree (:func:`pool_identity`) share one
:class:`PoolSet`; a snapshot with other proxy settings retires the previous set, which is closed
as soon as no request still uses it (so a request in flight is never cut, and no socket of the
old proxy is left open).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from egress.settings import ProxySettings, Settings

if TYPE_CHECKING:
    from egress.sources import SettingsSource, Snapshot

__all__ = ["Following", "FollowsSource", "Generation", "PoolSet", "pool_identity"]


_Transport = TypeVar("_Transport")


def pool_identity(settings: Settings) -> ProxySettings:
    """What a transport's pools depend on: the proxy settings, switched on or not (trust,
    credentials and the proxies' addresses); snapshots that agree on it share their pools."""
    return dataclasses.replace(settings.proxy, enabled=True)


class PoolSet(Generic[_Transport]):
    """The pools of the snapshots that share one proxy identity: owned by the first snapshot's
    transport, counted while requests use them, closed once retired and unused."""

    __slots__ = ("closed", "identity", "owner", "retired", "users")

    def __init__(self, owner: _Transport, identity: ProxySettings) -> None:
        self.owner = owner
        self.identity = identity
        self.users = 0
        self.retired = False
        self.closed = False


class Generation(Generic[_Transport]):
    """One snapshot of the source, the transport planned from it, and the pools it uses."""

    __slots__ = ("pools", "snapshot", "transport")

    def __init__(
        self, snapshot: Snapshot, transport: _Transport, pools: PoolSet[_Transport]
    ) -> None:
        self.snapshot = snapshot
        self.transport = transport
        self.pools = pools


class Following(Generic[_Transport]):
    """What the sync and async source transports share: which generation a request starts in.

    A request takes the source's snapshot and counts itself as a user of that generation's
    pools in one short critical section, so a pool set is never closed under a request that
    was about to use it. A new snapshot with other proxy settings retires the previous pools;
    the caller closes the pool sets handed back (outside the lock).
    """

    def __init__(
        self,
        source: SettingsSource,
        make: Callable[[Settings], _Transport],
        share: Callable[[_Transport, _Transport], None],
    ) -> None:
        self.source = source
        self._make = make
        self._share = share
        """``share(new, owner)`` makes ``new`` use ``owner``'s pools (same proxy identity)."""
        self._lock = threading.Lock()
        self._current: Generation[_Transport] | None = None
        self._retiring: list[PoolSet[_Transport]] = []
        """Retired pool sets that requests still use."""
        self._to_close: list[PoolSet[_Transport]] = []
        """Retired pool sets nobody uses: the next request (or close) closes them."""

    def enter(self) -> tuple[Generation[_Transport], list[PoolSet[_Transport]]]:
        """The generation of the current snapshot, now used by one more request; and the pool
        sets to close (retired with no user left)."""
        with self._lock:
            generation = self._generation()
            generation.pools.users += 1
            done, self._to_close = self._to_close, []
            return generation, done

    def current(self) -> Generation[_Transport]:
        """The generation of the source's current snapshot (made if needed), not counted."""
        with self._lock:
            return self._generation()

    def _generation(self) -> Generation[_Transport]:
        snapshot = self.source.current()
        generation = self._current
        if generation is not None and generation.snapshot is snapshot:
            return generation
        old = generation
        identity = pool_identity(snapshot.settings)
        transport = self._make(snapshot.settings)
        if old is not None and old.pools.identity == identity:
            pools = old.pools  # same proxy: keep the pools (and their kept-alive tunnels)
            self._share(transport, pools.owner)
        else:
            pools = PoolSet(transport, identity)
            if old is not None:
                old.pools.retired = True
                if old.pools.users == 0:
                    old.pools.closed = True
                    self._to_close.append(old.pools)
                else:
                    self._retiring.append(old.pools)
        generation = self._current = Generation(snapshot, transport, pools)
        return generation

    def leave(self, pools: PoolSet[_Transport]) -> PoolSet[_Transport] | None:
        """One request is done with ``pools``; returns them when they are now to be closed."""
        with self._lock:
            pools.users -= 1
            if pools.retired and pools.users == 0 and not pools.closed:
                pools.closed = True
                self._retiring.remove(pools)
                return pools
        return None

    def close_all(self) -> list[PoolSet[_Transport]]:
        """Every pool set still open, to be closed now (the client is closing)."""
        with self._lock:
            sets = [*self._to_close, *self._retiring]
            if self._current is not None:
                sets.append(self._current.pools)
            self._to_close, self._retiring, self._current = [], [], None
            for pools in sets:
                pools.closed = True
            return sets


class FollowsSource(Generic[_Transport]):
    """What every source-following transport or adapter answers the same way: its source, the
    source's current settings, and the transport of the current snapshot."""

    _following: Following[_Transport]

    @property
    def source(self) -> SettingsSource:
        return self._following.source

    @property
    def settings(self) -> Settings:
        return self._following.source.current().settings

    def current(self) -> _Transport:
        """The transport (or adapter) of the current snapshot."""
        return self._following.current().transport
