"""The event log (IoT Hub's built-in ``messages/events`` endpoint): ``hub.events``."""

from __future__ import annotations

import asyncio
import datetime as _dt
import heapq
from typing import TYPE_CHECKING, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Union

from .errors import InvalidArgumentError
from .message import Message

if TYPE_CHECKING:  # pragma: no cover
    from .hub import Hub


def partition_for(device_id: str, partitions: int) -> int:
    """The partition a device's messages go to (FNV-1a 32 of the id, as the C++ core computes it)."""
    h = 2166136261
    for c in device_id.encode():
        h ^= c
        h = (h * 16777619) & 0xFFFFFFFF
    return h % partitions


def _to_ms(t: Union[_dt.datetime, float, int]) -> int:
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return int(t.timestamp() * 1000)
    return int(float(t) * 1000)


class EventLog:
    """History and live tail of device-to-cloud messages, by partition, offset, enqueued time and device."""

    def __init__(self, hub: "Hub") -> None:
        self._hub = hub

    @property
    def partition_count(self) -> int:
        return int(self._hub._server.partition_count)

    def partitions(self) -> List[Dict[str, int]]:
        """For each partition: ``{"partition", "begin", "end"}`` sequence numbers (end is one past the last)."""
        return [
            {"partition": i, "begin": b, "end": e} for i, (b, e) in enumerate(self._hub._server.events_bounds())
        ]

    def _read_partition(self, p: int, start: int, device_id: Optional[str], module_id: Optional[str],
                        since_ms: Optional[int], until_ms: Optional[int], batch_size: int) -> Iterator[Message]:
        srv = self._hub._server
        pos = start
        while True:
            rows = srv.events_read(p, pos, batch_size)
            if not rows:
                return
            for t in rows:
                pos = t[1] + 1
                if device_id is not None and t[2] != device_id:
                    continue
                if module_id is not None and t[3] != module_id:
                    continue
                if since_ms is not None and t[4] < since_ms:
                    continue
                if until_ms is not None and t[4] >= until_ms:
                    return
                yield Message._from_core(t)

    def _seek_time(self, p: int, since_ms: int) -> int:
        """First sequence whose enqueued time may be >= since_ms (binary search; stamps are near-monotonic)."""
        srv = self._hub._server
        begin, end = srv.events_bounds()[p]
        lo, hi = begin, end
        while lo < hi:
            mid = (lo + hi) // 2
            rows = srv.events_read(p, mid, 1)
            if not rows:
                hi = mid
            elif rows[0][4] < since_ms:
                lo = mid + 1
            else:
                hi = mid
        # Stamps from different I/O threads can interleave by a few ms: step back a little, then filter.
        return max(begin, lo - 1024)

    def read(
        self,
        *,
        partition: Optional[int] = None,
        offset: Union[int, str, None] = None,
        since: Union[_dt.datetime, float, None] = None,
        until: Union[_dt.datetime, float, None] = None,
        device_id: Optional[str] = None,
        module_id: Optional[str] = None,
        limit: Optional[int] = None,
        batch_size: int = 1000,
    ) -> Iterator[Message]:
        """Messages already in the log, oldest first.

        ``partition`` and ``offset`` (a sequence number, inclusive) read one partition from a position;
        without ``partition`` every partition is read and merged by enqueued time. ``since``/``until``
        (datetime or unix seconds) bound the enqueued time; ``device_id`` keeps one device (reading only
        its partition).
        """
        n_parts = self.partition_count
        if partition is not None and not (0 <= partition < n_parts):
            raise InvalidArgumentError(f"partition must be 0..{n_parts - 1}, got {partition}")
        if offset is not None and partition is None and device_id is None:
            raise InvalidArgumentError("offset is per partition: pass partition= (or device_id=) as well")
        parts: Sequence[int]
        if partition is not None:
            parts = [partition]
        elif device_id is not None:
            parts = [partition_for(device_id, n_parts)]
        else:
            parts = range(n_parts)
        since_ms = _to_ms(since) if since is not None else None
        until_ms = _to_ms(until) if until is not None else None
        iters = []
        for p in parts:
            if offset is not None:
                start = int(offset)
            elif since_ms is not None:
                start = self._seek_time(p, since_ms)
            else:
                start = 0
            iters.append(self._read_partition(p, start, device_id, module_id, since_ms, until_ms, batch_size))
        merged: Iterator[Message] = (
            iters[0] if len(iters) == 1 else heapq.merge(*iters, key=lambda m: (m.enqueued_time_ms, m.partition))
        )
        for i, m in enumerate(merged):
            if limit is not None and i >= limit:
                return
            yield m

    def tail(
        self,
        *,
        from_: Union[str, Dict[int, int]] = "end",
        device_id: Optional[str] = None,
        batch_size: int = 1000,
    ) -> "EventTail":
        """A live reader. ``from_="end"`` (only new messages), ``"start"`` (everything retained, then live),
        or ``{partition: sequence}`` to resume from checkpoints."""
        return EventTail(self, from_, device_id, batch_size)


class EventTail:
    """Follows the event log as messages are committed.

    Blocking: ``for batch in tail.batches(timeout=1.0)`` or ``for msg in tail``. Asyncio (Jupyter too):
    ``async for msg in tail`` or ``await tail.get_async()``. ``positions`` is the checkpoint to resume from.
    """

    def __init__(self, log: EventLog, from_: Union[str, Dict[int, int]], device_id: Optional[str],
                 batch_size: int) -> None:
        self._log = log
        self._srv = log._hub._server
        self._device_id = device_id
        self._batch_size = batch_size
        bounds = self._srv.events_bounds()
        if from_ == "end":
            self.positions = [e for (_, e) in bounds]
        elif from_ == "start":
            self.positions = [b for (b, _) in bounds]
        elif isinstance(from_, dict):
            self.positions = [max(from_.get(i, b), b) for i, (b, _) in enumerate(bounds)]
        else:
            raise InvalidArgumentError('from_ must be "end", "start" or a {partition: sequence} dict')
        self._parts = (
            [partition_for(device_id, len(bounds))] if device_id is not None else list(range(len(bounds)))
        )
        self._closed = False

    def _drain(self) -> List[Message]:
        out: List[Message] = []
        for p in self._parts:
            rows = self._srv.events_read(p, self.positions[p], self._batch_size)
            if rows:
                self.positions[p] = rows[-1][1] + 1
                for t in rows:
                    if self._device_id is None or t[2] == self._device_id:
                        out.append(Message._from_core(t))
        return out

    def get(self, timeout: Optional[float] = None) -> List[Message]:
        """The next batch of new messages; an empty list when ``timeout`` (seconds) passes first."""
        batch = self._drain()
        if batch or self._closed:
            return batch
        wait_ms = -1 if timeout is None else int(timeout * 1000)
        while True:
            step = 500 if wait_ms < 0 else min(wait_ms, 500)
            ends = [e for (_, e) in self._srv.events_bounds()]
            known = list(ends)
            for p in self._parts:
                known[p] = self.positions[p]
            if any(ends[p] != self.positions[p] for p in self._parts):
                return self._drain()
            self._srv.events_wait(known, step)  # GIL released while waiting
            batch = self._drain()
            if batch or self._closed:
                return batch
            if wait_ms >= 0:
                wait_ms -= step
                if wait_ms <= 0:
                    return []

    def batches(self, timeout: Optional[float] = None) -> Iterator[List[Message]]:
        """Yields non-empty batches until ``timeout`` seconds pass with nothing new (None: forever)."""
        while not self._closed:
            b = self.get(timeout)
            if not b:
                if timeout is not None:
                    return
                continue
            yield b

    def __iter__(self) -> Iterator[Message]:
        for b in self.batches():
            yield from b

    async def get_async(self, timeout: Optional[float] = None) -> List[Message]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.get, timeout)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._agen()

    async def _agen(self) -> AsyncIterator[Message]:
        while not self._closed:
            # Short waits keep cancellation responsive inside a running loop (Jupyter).
            for m in await self.get_async(0.5):
                yield m

    def close(self) -> None:
        self._closed = True
