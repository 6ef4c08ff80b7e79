"""The poll path's version number (``egress.console.poll.FreshNumber``): every answer comes from
a read that began after the call, and polls that arrive together share one read."""

from __future__ import annotations

import asyncio
import threading

import pytest

from egress.console.poll import FreshNumber


class SlowStore:
    """A store whose read blocks until released, counting the reads."""

    def __init__(self) -> None:
        self.number = 1
        self.reads = 0
        self.release = threading.Event()
        self.started = threading.Event()

    def read(self) -> int:
        self.reads += 1
        seen = self.number  # the value at the start of the read, as a database snapshot
        self.started.set()
        assert self.release.wait(10)
        return seen


async def _wait(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.001)


def test_a_save_during_a_read_is_seen_by_the_polls_that_came_after_it() -> None:
    async def scenario() -> tuple[list[int], list[int], int]:
        store = SlowStore()
        fresh = FreshNumber(store.read)
        early = [asyncio.ensure_future(fresh.get()) for _ in range(5)]
        await _wait(store.started)
        store.number = 2  # another console saves while the first read runs
        late = [asyncio.ensure_future(fresh.get()) for _ in range(50)]
        await asyncio.sleep(0.01)
        store.release.set()
        return list(await asyncio.gather(*early)), list(await asyncio.gather(*late)), store.reads

    early, late, reads = asyncio.run(scenario())
    assert early[0] == 1  # the first started the read, before the save
    assert set(early) <= {1, 2}  # the others asked before the save too: either is honest
    assert late == [2] * 50  # never the stale 1, which would be a stale 304
    assert reads == 2  # 55 polls, two reads


def test_an_error_reaches_every_waiter_and_the_next_call_reads_again() -> None:
    calls = {"n": 0}

    def read() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database went away")
        return 7

    async def scenario() -> int:
        fresh = FreshNumber(read)
        with pytest.raises(RuntimeError, match="went away"):
            await fresh.get()
        return await fresh.get()

    assert asyncio.run(scenario()) == 7
