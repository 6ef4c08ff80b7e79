"""The poll path's version number: never stale, and shared by the polls that arrive together.

Several consoles may serve one PostgreSQL store, so a number remembered here can be out of date
the moment another console saves; a poll answered ``304`` from it would keep a component on the
old settings. So every poll is answered from a query that *started after the poll arrived*.
Polls that arrive while a query is running wait for the next one, which starts as soon as the
running one ends and answers all of them: a thousand pollers cost at most one query in flight,
run in a worker thread so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool


class FreshNumber:
    """``await get()``: the store's current version number, read after the call began."""

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: asyncio.Future[int] | None = None
        self._next: asyncio.Future[int] | None = None

    async def get(self) -> int:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests start several): start afresh
            self._loop, self._running, self._next = loop, None, None
        if self._running is None:
            future = self._running = loop.create_future()
            self._start(future)
        else:  # the running query may have begun before this poll: wait for the next one
            if self._next is None:
                self._next = loop.create_future()
            future = self._next
        return await asyncio.shield(future)

    def _start(self, future: asyncio.Future[int]) -> None:
        task = asyncio.ensure_future(run_in_threadpool(self._read))
        task.add_done_callback(lambda done: self._finished(future, done))

    def _finished(self, future: asyncio.Future[int], task: asyncio.Future[int]) -> None:
        if task.cancelled():
            future.cancel()
        elif (error := task.exception()) is not None:
            future.set_exception(error)  # each waiter gets it from its await
        else:
            future.set_result(task.result())
        self._running = None
        if self._next is not None:
            following, self._next = self._next, None
            self._running = following
            self._start(following)
