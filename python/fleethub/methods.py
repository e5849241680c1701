"""Direct methods from the back end: ``hub.methods.invoke`` (blocking) and ``invoke_async`` (asyncio)."""

from __future__ import annotations

import asyncio
import itertools
import json as _json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from . import errors as _errors
from .errors import DeviceNotFoundError, InvalidArgumentError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from .hub import Hub


@dataclass(frozen=True)
class MethodResult:
    """What the device answered: ``status`` (the integer it chose) and ``payload`` (its JSON, parsed;
    None when it sent none; the text as-is if it was not JSON)."""

    status: int
    payload: Any = None

    def to_dict(self) -> Dict[str, Any]:
        """IoT Hub's REST shape: ``{"status": ..., "payload": ...}``."""
        return {"status": self.status, "payload": self.payload}


def _encode(payload: Any) -> Optional[str]:
    if isinstance(payload, (bytes, bytearray)):
        text = bytes(payload).decode("utf-8")
        try:
            _json.loads(text)
        except ValueError:
            raise InvalidArgumentError("a bytes payload must be JSON text") from None
        return text
    try:
        return _json.dumps(payload, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"the method payload must be JSON-serializable: {e}") from None


def _decode(body: bytes) -> Any:
    if not body:
        return None
    text = body.decode("utf-8", errors="replace")
    try:
        return _json.loads(text)
    except ValueError:
        return text


def _check_timeouts(timeout: float, connect_timeout: float) -> None:
    if not 5 <= timeout <= 300:
        raise InvalidArgumentError(f"timeout must be 5..300 seconds (IoT Hub's responseTimeoutInSeconds), got {timeout}")
    if not 0 <= connect_timeout <= 300:
        raise InvalidArgumentError(f"connect_timeout must be 0..300 seconds, got {connect_timeout}")


class DirectMethods:
    """``hub.methods``: call a method on a connected device (IoT Hub direct methods).

    The device must be connected and subscribed to ``$iothub/methods/POST/#`` (the SDKs do this when a
    method handler is set), else DeviceNotOnlineError at once, unless ``connect_timeout`` gives it time
    to come online. No answer within ``timeout`` seconds raises MethodTimeoutError; an answer that comes
    later is dropped. Several calls may be in flight to one device.
    """

    def __init__(self, hub: "Hub") -> None:
        self._hub = hub
        self._tokens = itertools.count(1)
        self._futures: Dict[int, Tuple[asyncio.AbstractEventLoop, "asyncio.Future[MethodResult]"]] = {}
        self._lock = threading.Lock()
        self._pump: Optional[threading.Thread] = None

    def invoke(self, device_id: str, method_name: str, payload: Any = None, *, module_id: Optional[str] = None,
               timeout: float = 30, connect_timeout: float = 0) -> MethodResult:
        """Calls ``method_name`` with ``payload`` (any JSON value) and waits for the device's answer."""
        _check_timeouts(timeout, connect_timeout)
        body = _encode(payload)
        try:
            status, resp = self._hub._server.method_invoke(device_id, module_id or "", method_name, body,
                                                           float(timeout), float(connect_timeout))
        except _errors.DeviceNotOnlineError:
            raise
        except NotFoundError as e:
            raise DeviceNotFoundError(str(e)) from None
        return MethodResult(int(status), _decode(resp))

    async def invoke_async(self, device_id: str, method_name: str, payload: Any = None, *,
                           module_id: Optional[str] = None, timeout: float = 30,
                           connect_timeout: float = 0) -> MethodResult:
        """Like :meth:`invoke`, awaitable; thousands may be in flight at once (no thread per call)."""
        _check_timeouts(timeout, connect_timeout)
        body = _encode(payload)
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[MethodResult]" = loop.create_future()
        token = next(self._tokens)
        with self._lock:
            self._futures[token] = (loop, fut)
            self._ensure_pump()
        try:
            self._hub._server.method_invoke_async(token, device_id, module_id or "", method_name, body,
                                                  float(timeout), float(connect_timeout))
        except BaseException:
            with self._lock:
                self._futures.pop(token, None)
            raise
        return await fut

    # ---- completions: one thread resolves every pending future, a batch per wake-up ----
    def _ensure_pump(self) -> None:
        if self._pump is None or not self._pump.is_alive():
            self._pump = threading.Thread(target=self._run, name="fleethub-methods", daemon=True)
            self._pump.start()

    def _run(self) -> None:
        srv = self._hub._server
        while True:
            try:
                batch = srv.method_completions(200)
            except Exception:  # pragma: no cover - the hub object is gone
                return
            for token, status, payload, err_cls, message in batch:
                with self._lock:
                    entry = self._futures.pop(token, None)
                if entry is None:
                    continue
                loop, fut = entry
                if err_cls is None:
                    outcome: Any = MethodResult(int(status), _decode(payload or b""))
                else:
                    cls = getattr(_errors, err_cls, _errors.Error)
                    if cls is NotFoundError:
                        cls = DeviceNotFoundError
                    outcome = cls(message)
                try:
                    loop.call_soon_threadsafe(_resolve, fut, outcome)
                except RuntimeError:  # the caller's loop is closed
                    pass
            if srv.closed:
                with self._lock:
                    left = list(self._futures.values())
                    self._futures.clear()
                for loop, fut in left:
                    try:
                        loop.call_soon_threadsafe(_resolve, fut, _errors.UnavailableError("the hub was closed"))
                    except RuntimeError:
                        pass
                return


def _resolve(fut: "asyncio.Future[MethodResult]", outcome: Any) -> None:
    if fut.done():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
