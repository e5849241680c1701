"""The event log (IoT Hub's built-in ``messages/events`` endpoint): ``hub.events``."""

from __future__ import annotations

import asyncio
import datetime as _dt
import heapq
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload
from typing import Sequence as TypingSequence

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


# Routing sources (IoT Hub's names) and the bit each has in the core's source mask.
SOURCES: Dict[str, int] = {
    "DeviceMessages": 0,
    "TwinChangeEvents": 1,
    "DeviceLifecycleEvents": 2,
    "DeviceConnectionStateEvents": 3,
}
_SOURCE_ALIASES = {k.lower(): v for k, v in SOURCES.items()}
_SOURCE_ALIASES.update({"telemetry": 0, "twinchangeevents": 1, "devicelifecycleevents": 2,
                        "deviceconnectionstateevents": 3})
SourceSpec = Union[str, Sequence[str], None]


def _source_mask(source: SourceSpec) -> int:
    """``"DeviceMessages"`` (telemetry), a system-event source, a list of them, or None/"all" for everything."""
    if source is None or (isinstance(source, str) and source.lower() == "all"):
        return 0xFFFFFFFF
    names = [source] if isinstance(source, str) else list(source)
    mask = 0
    for n in names:
        bit = _SOURCE_ALIASES.get(str(n).lower())
        if bit is None:
            raise InvalidArgumentError(
                f"unknown source {n!r}: use one of {', '.join(SOURCES)} (or None for all)")
        mask |= 1 << bit
    return mask


def _to_ms(t: Union[_dt.datetime, float, int]) -> int:
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return int(t.timestamp() * 1000)
    return int(float(t) * 1000)


class EventBatch(TypingSequence[Message]):
    """A batch of messages in columns (``bodies``, ``device_ids``, ``sequence_numbers`` ...), as read from the
    log in one call. Indexing or iterating gives :class:`Message` objects; the columns serve batch consumers
    (and ``to_pandas()``) without building one object per message."""

    def __init__(self) -> None:
        self.partitions: List[int] = []
        self.sequence_numbers: List[int] = []
        self.device_ids: List[str] = []
        self.module_ids: List[str] = []
        self.enqueued_time_ms: List[int] = []
        self.bodies: List[bytes] = []
        self._sys: Optional[List[Any]] = []
        self._app: Optional[List[Any]] = []

    def _extend(self, partition: int, cols: Tuple[Any, ...]) -> None:
        seqs, devs, mods, times, bodies, sys_props, app_props = cols[:7]
        self.partitions.extend([partition] * len(seqs))
        self.sequence_numbers.extend(seqs)
        self.device_ids.extend(devs)
        self.module_ids.extend(mods)
        self.enqueued_time_ms.extend(times)
        self.bodies.extend(bodies)
        if sys_props is None or self._sys is None:
            self._sys = self._app = None
        else:
            self._sys.extend(sys_props)
            assert self._app is not None
            self._app.extend(app_props)

    @property
    def has_properties(self) -> bool:
        return self._sys is not None

    def __len__(self) -> int:
        return len(self.bodies)

    @overload
    def __getitem__(self, i: int) -> Message: ...

    @overload
    def __getitem__(self, i: slice) -> List[Message]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[Message, List[Message]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return Message(
            self.partitions[i],
            self.sequence_numbers[i],
            self.device_ids[i],
            self.module_ids[i],
            self.enqueued_time_ms[i],
            self.bodies[i],
            self._sys[i] if self._sys is not None else (),
            self._app[i] if self._app is not None else (),
        )

    def __iter__(self) -> Iterator[Message]:
        for i in range(len(self)):
            yield self[i]

    def to_pandas(self) -> Any:
        """A pandas DataFrame with one row per message (needs pandas installed)."""
        try:
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install pandas") from e
        data: Dict[str, Any] = {
            "partition": self.partitions,
            "sequence_number": self.sequence_numbers,
            "device_id": self.device_ids,
            "module_id": self.module_ids,
            "enqueued_time": pd.to_datetime(self.enqueued_time_ms, unit="ms", utc=True),
            "body": self.bodies,
        }
        if self._sys is not None and self._app is not None:
            data["properties"] = [dict(a) for a in self._app]
            data["system_properties"] = [dict(s) for s in self._sys]
        return pd.DataFrame(data)


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
                        since_ms: Optional[int], until_ms: Optional[int], batch_size: int,
                        mask: int) -> Iterator[Message]:
        srv = self._hub._server
        pos = start
        while True:
            rows, nxt = srv.events_read(p, pos, batch_size, mask)
            if nxt == pos:
                return
            pos = nxt
            for t in rows:
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
            rows, _ = srv.events_read(p, mid, 1)
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
        source: SourceSpec = "DeviceMessages",
    ) -> Iterator[Message]:
        """Messages already in the log, oldest first.

        ``partition`` and ``offset`` (a sequence number, inclusive) read one partition from a position;
        without ``partition`` every partition is read and merged by enqueued time. ``since``/``until``
        (datetime or unix seconds) bound the enqueued time; ``device_id`` keeps one device (reading only
        its partition). ``source`` picks the routing source: device telemetry (``"DeviceMessages"``, the
        default), the hub's system events (``"TwinChangeEvents"``, ``"DeviceLifecycleEvents"``,
        ``"DeviceConnectionStateEvents"``), a list of them, or ``None`` for everything.
        """
        mask = _source_mask(source)
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
            iters.append(self._read_partition(p, start, device_id, module_id, since_ms, until_ms, batch_size, mask))
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
        source: SourceSpec = "DeviceMessages",
    ) -> "EventTail":
        """A live reader. ``from_="end"`` (only new messages), ``"start"`` (everything retained, then live),
        or ``{partition: sequence}`` to resume from checkpoints. ``source`` as in :meth:`read`."""
        return EventTail(self, from_, device_id, batch_size, source)


class EventTail:
    """Follows the event log as messages are committed.

    Blocking: ``for batch in tail.batches(timeout=1.0)`` or ``for msg in tail``. Asyncio (Jupyter too):
    ``async for msg in tail`` or ``await tail.get_async()``. ``positions`` is the checkpoint to resume from.
    """

    def __init__(self, log: EventLog, from_: Union[str, Dict[int, int]], device_id: Optional[str],
                 batch_size: int, source: SourceSpec = "DeviceMessages") -> None:
        self._log = log
        self._mask = _source_mask(source)
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

    def _drain(self, properties: bool) -> EventBatch:
        batch = EventBatch()
        for p in self._parts:
            cols = self._srv.events_read_columns(p, self.positions[p], self._batch_size, properties, self._mask)
            self.positions[p] = cols[7]  # past filtered-out records too
            if cols[0]:
                batch._extend(p, cols)
        if self._device_id is not None and len(batch):
            keep = [i for i, d in enumerate(batch.device_ids) if d == self._device_id]
            if len(keep) != len(batch):
                filtered = EventBatch()
                for name in ("partitions", "sequence_numbers", "device_ids", "module_ids", "enqueued_time_ms", "bodies"):
                    col = getattr(batch, name)
                    setattr(filtered, name, [col[i] for i in keep])
                filtered._sys = [batch._sys[i] for i in keep] if batch._sys is not None else None
                filtered._app = [batch._app[i] for i in keep] if batch._app is not None else None
                batch = filtered
        return batch

    def get_batch(self, timeout: Optional[float] = None, *, properties: bool = True) -> EventBatch:
        """The next batch of new messages in columns; empty when ``timeout`` (seconds) passes first.
        ``properties=False`` skips application and system properties (faster for body-only consumers)."""
        batch = self._drain(properties)
        if len(batch) or self._closed:
            return batch
        wait_ms = -1 if timeout is None else int(timeout * 1000)
        while True:
            step = 500 if wait_ms < 0 else min(wait_ms, 500)
            ends = [e for (_, e) in self._srv.events_bounds()]
            if any(ends[p] != self.positions[p] for p in self._parts):
                batch = self._drain(properties)
                if len(batch):
                    return batch
                continue  # only other devices' messages arrived
            known = list(ends)
            for p in self._parts:
                known[p] = self.positions[p]
            self._srv.events_wait(known, step)  # GIL released while waiting
            batch = self._drain(properties)
            if len(batch) or self._closed:
                return batch
            if wait_ms >= 0:
                wait_ms -= step
                if wait_ms <= 0:
                    return batch

    def get(self, timeout: Optional[float] = None) -> List[Message]:
        """The next batch of new messages; an empty list when ``timeout`` (seconds) passes first."""
        return list(self.get_batch(timeout))

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
