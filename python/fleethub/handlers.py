"""Python handlers for the hub's system events: ``@hub.on_twin_change``, ``@hub.on_connection_state`` and
``@hub.on_device_lifecycle``.

One dispatcher thread per hub follows the event log (the same durable records routing uses), takes the GIL
once per batch and calls the handlers in log order per device. A handler that raises is logged on the
``fleethub.handlers`` logger and counted in ``hub.handler_errors``; the hub and the other handlers go on.
Handlers see events committed after the first handler was registered.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from .events import SOURCES
from .message import Message

if TYPE_CHECKING:  # pragma: no cover
    from .hub import Hub

_log = logging.getLogger("fleethub.handlers")


def _body(m: Message) -> Any:
    try:
        return m.json()
    except ValueError:
        return None


@dataclass(frozen=True)
class TwinChangeEvent:
    """A twin changed (IoT Hub ``TwinChangeEvents``). ``op_type`` is ``"updateTwin"`` (``body`` holds what
    changed, with metadata and the new ``$version``) or ``"replaceTwin"`` (``body`` is the whole twin)."""

    device_id: str
    module_id: Optional[str]
    op_type: str
    body: Any
    version: Optional[int]
    time: _dt.datetime
    message: Message = field(repr=False)

    @property
    def desired(self) -> Optional[Dict[str, Any]]:
        """The desired-properties part of the change, if any (with ``$metadata`` and ``$version``)."""
        props = (self.body or {}).get("properties") or {}
        d = props.get("desired")
        return d if isinstance(d, dict) else None

    @property
    def reported(self) -> Optional[Dict[str, Any]]:
        props = (self.body or {}).get("properties") or {}
        r = props.get("reported")
        return r if isinstance(r, dict) else None

    @property
    def tags(self) -> Optional[Dict[str, Any]]:
        t = (self.body or {}).get("tags")
        return t if isinstance(t, dict) else None


@dataclass(frozen=True)
class ConnectionStateEvent:
    """A device (or module) connected or disconnected (IoT Hub ``DeviceConnectionStateEvents``).
    ``sequence_number`` strings only increase: compare them to drop out-of-order events."""

    device_id: str
    module_id: Optional[str]
    connected: bool
    op_type: str
    sequence_number: str
    time: _dt.datetime
    message: Message = field(repr=False)


@dataclass(frozen=True)
class LifecycleEvent:
    """An identity was created or deleted (IoT Hub ``DeviceLifecycleEvents``); ``twin`` is its twin JSON."""

    device_id: str
    module_id: Optional[str]
    created: bool
    op_type: str
    twin: Any
    time: _dt.datetime
    message: Message = field(repr=False)


def _event_from(m: Message) -> Tuple[str, Any]:
    props = m.properties
    op = props.get("opType", "")
    when = m.enqueued_time
    src = m.source
    if src == "twinChangeEvents":
        body = _body(m)
        version = body.get("version") if isinstance(body, dict) else None
        return "twin", TwinChangeEvent(m.device_id, m.module_id, op, body, version, when, m)
    if src == "deviceConnectionStateEvents":
        body = _body(m)
        seq = body.get("sequenceNumber", "") if isinstance(body, dict) else ""
        return "connection", ConnectionStateEvent(m.device_id, m.module_id, op == "deviceConnected", op, seq,
                                                  when, m)
    return "lifecycle", LifecycleEvent(m.device_id, m.module_id, op == "createDeviceIdentity", op, _body(m), when, m)


_KIND_SOURCE = {
    "twin": "TwinChangeEvents",
    "connection": "DeviceConnectionStateEvents",
    "lifecycle": "DeviceLifecycleEvents",
}


class HandlerDispatcher:
    def __init__(self, hub: "Hub") -> None:
        self._hub = hub
        self._handlers: Dict[str, List[Callable[[Any], Any]]] = {k: [] for k in _KIND_SOURCE}
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._positions: Optional[List[int]] = None
        self.errors = 0
        self.calls = 0

    def add(self, kind: str, fn: Callable[[Any], Any]) -> None:
        with self._lock:
            self._handlers[kind].append(fn)
            if self._positions is None:
                self._positions = [e for (_, e) in self._hub._server.events_bounds()]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fleethub-handlers", daemon=True)
                self._thread.start()

    def _mask(self) -> int:
        mask = 0
        for kind, fns in self._handlers.items():
            if fns:
                mask |= 1 << SOURCES[_KIND_SOURCE[kind]]
        return mask

    def _run(self) -> None:
        srv = self._hub._server
        while not self._stop.is_set():
            try:
                got = self._drain(srv)
                if not got:
                    assert self._positions is not None
                    srv.events_wait(list(self._positions), 200)
            except Exception:  # the hub was closed under us
                if self._stop.is_set() or srv.closed:
                    return
                _log.exception("handler dispatcher failed; retrying")
                self._stop.wait(0.5)

    def _drain(self, srv: Any) -> bool:
        with self._lock:
            mask = self._mask()
            handlers = {k: list(v) for k, v in self._handlers.items()}
        assert self._positions is not None
        got = False
        for p in range(len(self._positions)):
            while True:
                rows, nxt = srv.events_read(p, self._positions[p], 500, mask)
                if nxt == self._positions[p]:
                    break
                self._positions[p] = nxt
                got = True
                for t in rows:
                    kind, ev = _event_from(Message._from_core(t))
                    for fn in handlers.get(kind, ()):
                        self.calls += 1
                        try:
                            fn(ev)
                        except Exception:
                            self.errors += 1
                            _log.exception("%s handler %r raised (the hub goes on)", kind,
                                           getattr(fn, "__name__", fn))
        return got

    def stop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)
        self._thread = None
