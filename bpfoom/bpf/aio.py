"""asyncio for event sources: wait on a source's ``fileno()`` in the event loop, then read
what is there without blocking.

A source here is anything with ``fileno()`` (readable when records wait),
``poll(0)`` (reads them into its queue without blocking) and
``events(timeout=0)`` (yields the queued events and returns): the policies'
and the kill watcher's event streams.  Nothing blocks the loop and no thread
is used; the reading happens in the loop's thread, between awaits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

__all__ = ["wait_readable", "follow", "aevents"]


async def wait_readable(fd: int, timeout: float | None = None) -> bool:
    """Wait until ``fd`` is readable; False if ``timeout`` seconds passed first."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[bool] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(True)
    loop.add_reader(fd, wake)
    try:
        return await asyncio.wait_for(ready, timeout)
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def follow(fileno: Callable[[], int], read_now: Callable[[], Iterable[Any]],
                 timeout: float | None = None) -> AsyncIterator[Any]:
    """What ``read_now()`` returns, each time ``fileno()`` is readable; ends after ``timeout``
    seconds without an item (None: never)."""
    last = time.monotonic()
    while True:
        for item in read_now():
            yield item
            last = time.monotonic()
        left = None if timeout is None else timeout - (time.monotonic() - last)
        if left is not None and left <= 0:
            return
        await wait_readable(fileno(), left)


def aevents(source: Any, timeout: float | None = None) -> AsyncIterator[Any]:
    """``source``'s events as they come, like ``source.events(timeout)`` but awaiting.

    ``async for event in bpfoom.aevents(policy, timeout=60): ...``.  A closed
    source raises its ClosedError at the next read.
    """
    if not callable(getattr(source, "fileno", None)):
        raise TypeError(f"{type(source).__name__} has no fileno(); aevents() needs a source "
                        "that can be waited on in an event loop")

    def read_now() -> Iterable[Any]:
        source.poll(0)
        events: Iterable[Any] = source.events(timeout=0)
        return events
    return follow(source.fileno, read_now, timeout)
