"""Cloud-to-device messages: ``hub.c2d.send/purge/depth`` and delivery feedback.

Each device has a durable queue (IoT Hub semantics: at most 50 messages by default, a TTL of one hour by
default and 48 hours at most, delivery counts, feedback). A connected device subscribed to
``devices/{id}/messages/devicebound/#`` gets the messages in order at QoS 1; its PUBACK completes them.
Messages for an offline device wait, and flow when its persistent session returns."""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import json as _json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from .errors import DeviceNotFoundError, ForbiddenError, InvalidArgumentError, NotFoundError, QueueFullError

if TYPE_CHECKING:  # pragma: no cover
    from .hub import Hub

_ACKS = ("none", "positive", "negative", "full")
Expiry = Union[_dt.datetime, _dt.timedelta, float, int, None]


@dataclass(frozen=True)
class C2DMessageInfo:
    """What the hub queued: the message id (generated when not given), its queue sequence number, and
    when it expires."""

    message_id: str
    sequence_number: int
    expiry_time: _dt.datetime


@dataclass(frozen=True)
class FeedbackRecord:
    """One delivery outcome (IoT Hub's feedback record). ``status_code`` is ``Success``, ``Expired``,
    ``DeliveryCountExceeded``, ``Rejected`` or ``Purged``."""

    original_message_id: str
    enqueued_time_utc: str
    status_code: str
    description: str
    device_id: str
    device_generation_id: str


class FeedbackBatch:
    """A feedback message: up to 64 records. It is locked for you until :meth:`complete` (done with it)
    or :meth:`abandon` (give it back for redelivery); an unsettled batch comes back after its lock."""

    def __init__(self, hub: "Hub", row: Tuple[int, str, int, int, str, str]) -> None:
        self._hub = hub
        self.id, self.lock_token, enq_ms, self.delivery_count, self.body, self.user_id = row
        self.enqueued_time = _dt.datetime.fromtimestamp(enq_ms / 1000.0, tz=_dt.timezone.utc)
        self.records: List[FeedbackRecord] = [
            FeedbackRecord(r["originalMessageId"], r["enqueuedTimeUtc"], r["statusCode"], r["description"],
                           r["deviceId"], r["deviceGenerationId"])
            for r in _json.loads(self.body)
        ]
        self.content_type = "application/vnd.microsoft.iothub.feedback.json"

    def complete(self) -> None:
        self._hub._server.c2d_complete_feedback(self.lock_token)

    def abandon(self) -> None:
        self._hub._server.c2d_abandon_feedback(self.lock_token)

    def __iter__(self) -> Iterator[FeedbackRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"FeedbackBatch(records={len(self.records)}, delivery_count={self.delivery_count})"


def _expiry_ms(expiry: Expiry) -> Optional[int]:
    if expiry is None:
        return None
    if isinstance(expiry, _dt.datetime):
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=_dt.timezone.utc)
        return int(expiry.timestamp() * 1000)
    seconds = expiry.total_seconds() if isinstance(expiry, _dt.timedelta) else float(expiry)
    return int((time.time() + seconds) * 1000)


class CloudToDevice:
    """``hub.c2d``: send cloud-to-device messages, purge queues, and read delivery feedback."""

    def __init__(self, hub: "Hub") -> None:
        self._hub = hub

    def _args(self, device_id: str, body: Any, properties: Optional[Mapping[str, str]], message_id: Optional[str],
              correlation_id: Optional[str], user_id: Optional[str], content_type: Optional[str],
              content_encoding: Optional[str], expiry: Expiry, ack: str) -> Tuple[Any, ...]:
        if ack not in _ACKS:
            raise InvalidArgumentError(f"ack must be one of {', '.join(_ACKS)}, got {ack!r}")
        if isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            try:
                data = _json.dumps(body, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as e:
                raise InvalidArgumentError(f"body must be bytes, str or JSON-serializable: {e}") from None
            content_type = content_type or "application/json"
            content_encoding = content_encoding or "utf-8"
        sys_props: List[Tuple[str, str]] = []
        for key, val in (("message-id", message_id), ("correlation-id", correlation_id), ("user-id", user_id),
                         ("content-type", content_type), ("content-encoding", content_encoding)):
            if val is not None:
                sys_props.append((key, str(val)))
        app = [(str(k), str(v)) for k, v in (properties or {}).items()]
        return (device_id, data, sys_props, app, _expiry_ms(expiry), ack)

    @staticmethod
    def _translate(e: Exception) -> Exception:
        if isinstance(e, ForbiddenError) and "403004" in str(e):
            return QueueFullError(str(e))
        if isinstance(e, NotFoundError) and not isinstance(e, DeviceNotFoundError):
            return DeviceNotFoundError(str(e))
        return e

    def send(self, device_id: str, body: Any, *, properties: Optional[Mapping[str, str]] = None,
             message_id: Optional[str] = None, correlation_id: Optional[str] = None, user_id: Optional[str] = None,
             content_type: Optional[str] = None, content_encoding: Optional[str] = None, expiry: Expiry = None,
             ack: str = "none") -> C2DMessageInfo:
        """Queues a message for ``device_id`` and returns once it is durable.

        ``body``: bytes, str (UTF-8), or any JSON value (sent as application/json). ``properties``: application
        properties. ``expiry``: an absolute datetime, or a TTL as timedelta/seconds (default: the hub's, 1 h;
        at most 48 h). ``ack``: ``"none"``, ``"positive"`` (feedback on completion), ``"negative"`` (on
        expiry, rejection, too many deliveries, purge) or ``"full"``. Raises QueueFullError (403004) when the
        device's queue is full, DeviceNotFoundError for an unknown or disabled device, TooLargeError over
        64 KB, InvalidArgumentError for a bad expiry."""
        args = self._args(device_id, body, properties, message_id, correlation_id, user_id, content_type,
                          content_encoding, expiry, ack)
        try:
            seq, mid, exp = self._hub._server.c2d_send(*args)
        except (ForbiddenError, NotFoundError) as e:
            raise self._translate(e) from None
        return C2DMessageInfo(str(mid), int(seq), _dt.datetime.fromtimestamp(exp / 1000.0, tz=_dt.timezone.utc))

    async def send_async(self, device_id: str, body: Any, **kwargs: Any) -> C2DMessageInfo:
        """Like :meth:`send`, awaitable; many sends in flight share group commits."""
        args = self._args(device_id, body, kwargs.pop("properties", None), kwargs.pop("message_id", None),
                          kwargs.pop("correlation_id", None), kwargs.pop("user_id", None),
                          kwargs.pop("content_type", None), kwargs.pop("content_encoding", None),
                          kwargs.pop("expiry", None), kwargs.pop("ack", "none"))
        if kwargs:
            raise TypeError(f"send_async() got unexpected arguments {sorted(kwargs)}")
        srv = self._hub._server

        def decode(_status: int, payload: bytes) -> C2DMessageInfo:
            seq, mid, exp = payload.decode().split("\n")
            return C2DMessageInfo(mid, int(seq), _dt.datetime.fromtimestamp(int(exp) / 1000.0, tz=_dt.timezone.utc))

        try:
            info: C2DMessageInfo = await self._hub._completions.call(
                lambda token: srv.c2d_send_async(token, *args), decode)
        except (ForbiddenError, NotFoundError) as e:
            raise self._translate(e) from None
        return info

    # ---- many messages in one commit ----
    def _batch_items(self, messages: Iterable[Any], defaults: Mapping[str, Any]) -> List[Tuple[Any, ...]]:
        items = []
        for m in messages:
            if isinstance(m, Mapping):
                kw = {**defaults, **{k: v for k, v in m.items() if k not in ("device_id", "body")}}
                dev, body = m["device_id"], m["body"]
            else:
                kw = dict(defaults)
                dev, body = m[0], m[1]
                if len(m) > 2:
                    kw["properties"] = m[2]
            items.append(self._args(dev, body, kw.get("properties"), kw.get("message_id"), kw.get("correlation_id"),
                                    kw.get("user_id"), kw.get("content_type"), kw.get("content_encoding"),
                                    kw.get("expiry"), kw.get("ack", "none")))
        return items

    def _batch_results(self, text: str) -> List[Union[C2DMessageInfo, Exception]]:
        from . import errors as _errors

        out: List[Union[C2DMessageInfo, Exception]] = []
        for r in _json.loads(text):
            if "error" in r:
                cls = getattr(_errors, r["error"], _errors.Error)
                out.append(self._translate(cls(r["message"])))
            else:
                out.append(C2DMessageInfo(r["mid"], int(r["seq"]),
                                          _dt.datetime.fromtimestamp(r["exp"] / 1000.0, tz=_dt.timezone.utc)))
        return out

    def send_batch(self, messages: Iterable[Any], **defaults: Any) -> List[Union[C2DMessageInfo, Exception]]:
        """Queues many messages in one commit (a fleet-wide command, or a burst). Each message is
        ``(device_id, body)``, ``(device_id, body, properties)`` or a dict with ``device_id``, ``body`` and
        any :meth:`send` keyword; ``defaults`` are :meth:`send` keywords for all of them. Returns, in order,
        a C2DMessageInfo per queued message or the exception that refused it (e.g. QueueFullError)."""
        items = self._batch_items(messages, defaults)
        return self._batch_results(self._hub._server.c2d_send_batch(items))

    async def send_batch_async(self, messages: Iterable[Any], **defaults: Any) -> List[Union[C2DMessageInfo, Exception]]:
        """Like :meth:`send_batch`, awaitable."""
        items = self._batch_items(messages, defaults)
        srv = self._hub._server
        text: str = await self._hub._completions.call(lambda token: srv.c2d_send_batch(items, token),
                                                     lambda _status, payload: payload.decode())
        return self._batch_results(text)

    def purge(self, device_id: str) -> int:
        """Removes every message queued for the device (Purged feedback where asked); returns how many."""
        try:
            return int(self._hub._server.c2d_purge(device_id))
        except NotFoundError as e:
            raise DeviceNotFoundError(str(e)) from None

    def depth(self, device_id: str) -> int:
        """Messages in the device's queue (waiting or delivered and not yet acknowledged)."""
        return int(self._hub._server.c2d_depth(device_id))

    def stats(self) -> Mapping[str, int]:
        """Counters since start: sent, completed, expired, dead_lettered, purged."""
        return dict(self._hub._server.c2d_stats())

    # ---- feedback ----
    def receive_feedback(self, timeout: Optional[float] = None) -> Optional[FeedbackBatch]:
        """The next feedback batch, locked for you; None when ``timeout`` seconds pass first (None: wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        srv = self._hub._server
        while True:
            step = 200 if deadline is None else max(0, min(200, int((deadline - time.monotonic()) * 1000)))
            row = srv.c2d_receive_feedback(step)
            if row is not None:
                return FeedbackBatch(self._hub, row)
            if srv.closed or (deadline is not None and time.monotonic() >= deadline):
                return None

    def feedback(self, timeout: Optional[float] = None) -> Iterator[FeedbackBatch]:
        """Yields feedback batches as they come; stops after ``timeout`` seconds without one (None: never).
        Complete (or abandon) each batch."""
        while True:
            b = self.receive_feedback(timeout)
            if b is None:
                if timeout is not None or self._hub._server.closed:
                    return
                continue
            yield b

    async def receive_feedback_async(self, timeout: Optional[float] = None) -> Optional[FeedbackBatch]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.receive_feedback, timeout))

    async def feedback_async(self, timeout: Optional[float] = None) -> AsyncIterator[FeedbackBatch]:
        """``async for batch in hub.c2d.feedback_async():`` (works in Jupyter's running loop)."""
        waited = 0.0
        while not self._hub._server.closed:
            b = await self.receive_feedback_async(0.5)  # short waits keep cancellation responsive
            if b is None:
                waited += 0.5
                if timeout is not None and waited >= timeout:
                    return
                continue
            waited = 0.0
            yield b
