"""Direct methods from the back end: ``hub.methods.invoke`` (blocking) and ``invoke_async`` (asyncio)."""

from __future__ import annotations

import json as _json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional

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
        srv = self._hub._server

        def start(token: int) -> None:
            srv.method_invoke_async(token, device_id, module_id or "", method_name, body, float(timeout),
                                    float(connect_timeout))

        result: MethodResult = await self._hub._completions.call(
            start, lambda status, payload: MethodResult(status, _decode(payload)))
        return result
