"""Admission control: a bounded number of crop loops in flight, a bounded queue, and "come back later" beyond it.

A loop holds a model for seconds; accepting every request would let a burst pile up without limit (memory, and
latencies no client waits for). So at most ``concurrency`` loops run (each in a worker thread: backends block),
at most ``queue`` more wait in arrival order, and a request beyond that is refused at once with a
:class:`QueueFull` carrying a ``Retry-After`` estimate: the mean loop time times the loops ahead of a newcomer,
divided by the slots. A loop that started always runs to its end (a model call cannot be interrupted), also when
its client has gone; a request whose client leaves while it is still queued is dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Admission", "Job", "QueueFull"]

T = TypeVar("T")


class QueueFull(Exception):
    """Every slot is busy and the queue is full; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int, *, running: int, waiting: int) -> None:
        super().__init__(f"all {running} loop slot(s) are busy and {waiting} request(s) are queued; "
                         f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class Job(Generic[T]):
    """One admitted request: ``await job.task`` gives ``fn()``'s value; the timings say where the time went."""

    task: "asyncio.Task[T]" = field(init=False)
    started: bool = False
    queue_s: float = 0.0
    run_s: float = 0.0


class Admission:
    """Runs blocking functions in worker threads, ``concurrency`` at once, with ``queue`` more waiting.

    Args:
        concurrency: Loops in flight at once (>= 1).
        queue: Requests allowed to wait for a slot (>= 0).
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError(f"concurrency must be >= 1 and queue >= 0, got {concurrency} and {queue}")
        self.concurrency = concurrency
        self.queue = queue
        self.running = 0
        self.waiting = 0
        self._mean_s: float | None = None
        self._sem: asyncio.Semaphore | None = None
        self._limiter: Any = None
        self._jobs: set[asyncio.Task[Any]] = set()

    def submit(self, fn: Callable[[], T]) -> Job[T]:
        """Queue ``fn`` for a slot; call from the event loop.

        Raises:
            QueueFull: No slot and no room in the queue (nothing was queued).
        """
        if self.running + self.waiting >= self.concurrency + self.queue:
            raise QueueFull(self.retry_after_s(), running=self.running, waiting=self.waiting)
        job: Job[T] = Job()
        self.waiting += 1
        job.task = asyncio.get_running_loop().create_task(self._run(job, fn, time.perf_counter()))
        self._jobs.add(job.task)  # the loop keeps only weak references to tasks
        job.task.add_done_callback(self._settle)
        return job

    def _settle(self, task: "asyncio.Task[Any]") -> None:
        self._jobs.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a client that left does not leave "exception never retrieved" noise

    def abandon(self, job: Job[Any]) -> None:
        """The client left: drop the job if it is still queued (a running loop finishes)."""
        if not job.started:
            job.task.cancel()

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free for a newcomer (at least 1)."""
        if self._mean_s is None:
            return 1
        ahead = self.waiting + 1
        return max(1, min(300, math.ceil(self._mean_s * ahead / self.concurrency)))

    async def _run(self, job: Job[T], fn: Callable[[], T], t0: float) -> T:
        import anyio

        if self._sem is None:  # made on first use: bound to the running event loop
            self._sem = asyncio.Semaphore(self.concurrency)
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        job.started = True
        job.queue_s = time.perf_counter() - t0
        self.running += 1
        t1 = time.perf_counter()
        try:
            # not abandoned on cancellation: the slot stays taken until the model call really ends
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        finally:
            job.run_s = time.perf_counter() - t1
            self.running -= 1
            self._sem.release()
            self._mean_s = job.run_s if self._mean_s is None else 0.8 * self._mean_s + 0.2 * job.run_s
