"""Opportunistic micro-batching in front of a batch-capable compute function.

Requests that arrive while the model is busy are merged into the next execution (up to
`max_batch_size` rows), so under load one onnxruntime call serves many requests, as Triton's
dynamic batcher does; an idle server runs a lone request at once. `max_latency_ms` > 0 additionally
waits that long for a batch to fill (the ModelDeployment's `batching.maxLatencyMs`).
Compute runs on worker threads (onnxruntime releases the GIL) or, with `workers=0`, inline on the
event loop: for sub-millisecond models the thread hand-off costs more than the model (the GIL
switch interval alone is milliseconds), and requests arriving meanwhile still batch up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

Compute = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, compute: Compute, *, max_batch_size: int, max_latency_ms: float = 0.0,
                 workers: int = 1, on_batch: Callable[[int], None] | None = None) -> None:
        self.compute = compute
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self.on_batch = on_batch
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlsd-compute") if workers else None
        self.workers = max(workers, 1)
        self.queue: asyncio.Queue[_Pending] | None = None
        self.tasks: list[asyncio.Task] = []
        self._carry: _Pending | None = None

    def _ensure_started(self) -> None:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.tasks = [asyncio.get_running_loop().create_task(self._run()) for _ in range(self.workers)]

    async def submit(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._ensure_started()
        assert self.queue is not None
        rows = len(next(iter(feeds.values())))
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(feeds, rows, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        assert self.queue is not None
        first, self._carry = (self._carry, None) if self._carry is not None else (await self.queue.get(), None)
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self.max_latency
        while rows < self.max_batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + item.rows > self.max_batch_size or item.feeds.keys() != first.feeds.keys():
                self._carry = item   # opens the next batch, keeping arrival order
                break
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            await self._execute(batch)

    async def _execute(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.cancelled()]
        if not live:
            return
        feeds = {name: np.concatenate([p.feeds[name] for p in live]) if len(live) > 1 else live[0].feeds[name]
                 for name in live[0].feeds}
        loop = asyncio.get_running_loop()
        try:
            if self.executor is None:
                results = self.compute(feeds)
            else:
                results = await loop.run_in_executor(self.executor, self.compute, feeds)
        except Exception as err:  # noqa: BLE001 - handed to every waiting request
            for p in live:
                if not p.future.done():
                    p.future.set_exception(err)
            return
        if self.on_batch is not None:
            self.on_batch(sum(p.rows for p in live))
        start = 0
        for p in live:
            if not p.future.done():
                p.future.set_result({name: value[start:start + p.rows] for name, value in results.items()})
            start += p.rows

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
