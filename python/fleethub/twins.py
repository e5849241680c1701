"""Device and module twins from the back end: ``hub.twins.get/update/replace`` (blocking and async)."""

from __future__ import annotations

import asyncio
import copy
import functools
import json as _json
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, TypeVar

from .errors import DeviceNotFoundError, InvalidArgumentError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from .hub import Hub

_T = TypeVar("_T")


def _strip(section: Mapping[str, Any]) -> Dict[str, Any]:
    """A properties section without the hub's ``$metadata`` and ``$version``."""
    return {k: v for k, v in section.items() if not k.startswith("$")}


class Twin:
    """A twin as IoT Hub's service API returns it (``to_dict()`` is that JSON, field for field).

    ``tags``, ``desired`` and ``reported`` are the user properties (without ``$metadata``/``$version``);
    ``desired_version``/``reported_version`` are the sections' ``$version``; ``etag`` is what
    ``update(..., etag=)`` checks; ``metadata("desired")`` gives the ``$lastUpdated`` tree.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = data

    @property
    def device_id(self) -> str:
        return str(self._data["deviceId"])

    @property
    def module_id(self) -> Optional[str]:
        m = self._data.get("moduleId")
        return str(m) if m else None

    @property
    def etag(self) -> str:
        return str(self._data["etag"])

    @property
    def version(self) -> int:
        return int(self._data["version"])

    @property
    def tags(self) -> Dict[str, Any]:
        return copy.deepcopy(self._data.get("tags") or {})

    @property
    def desired(self) -> Dict[str, Any]:
        return copy.deepcopy(_strip(self._data["properties"]["desired"]))

    @property
    def reported(self) -> Dict[str, Any]:
        return copy.deepcopy(_strip(self._data["properties"]["reported"]))

    @property
    def desired_version(self) -> int:
        return int(self._data["properties"]["desired"]["$version"])

    @property
    def reported_version(self) -> int:
        return int(self._data["properties"]["reported"]["$version"])

    @property
    def connection_state(self) -> str:
        return str(self._data.get("connectionState", "Disconnected"))

    @property
    def status(self) -> str:
        return str(self._data.get("status", "enabled"))

    def metadata(self, section: str = "desired") -> Dict[str, Any]:
        """``$metadata`` of ``"desired"`` or ``"reported"``: ``$lastUpdated`` (and for desired
        ``$lastUpdatedVersion``) at every level."""
        if section not in ("desired", "reported"):
            raise InvalidArgumentError('section must be "desired" or "reported"')
        return copy.deepcopy(self._data["properties"][section].get("$metadata", {}))

    def to_dict(self) -> Dict[str, Any]:
        return copy.deepcopy(self._data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Twin) and other._data == self._data

    def __repr__(self) -> str:
        who = self.device_id + (f"/{self.module_id}" if self.module_id else "")
        return (f"Twin({who!r}, version={self.version}, desired_version={self.desired_version}, "
                f"reported_version={self.reported_version}, etag={self.etag!r})")


def _body(patch: Optional[Mapping[str, Any]], tags: Optional[Mapping[str, Any]],
          desired: Optional[Mapping[str, Any]]) -> str:
    body: Dict[str, Any] = {}
    if patch is not None:
        if not isinstance(patch, Mapping):
            raise InvalidArgumentError('patch must be a dict like {"tags": {...}, "properties": {"desired": {...}}}')
        body = dict(patch)
    if tags is not None:
        body["tags"] = dict(tags)
    if desired is not None:
        props = dict(body.get("properties") or {})
        props["desired"] = dict(desired)
        body["properties"] = props
    try:
        return _json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"the twin update is not JSON-serializable: {e}") from None


class TwinRegistry:
    """``hub.twins``: read and change twins from the back end (IoT Hub's ``/twins`` service API).

    Desired changes reach the device (if it is connected and subscribed) once they are durable, with
    ``$version`` in every notification. Each change also lands in the event log as a ``TwinChangeEvents``
    message (see ``hub.events.read(source="TwinChangeEvents")`` and ``@hub.on_twin_change``).
    """

    def __init__(self, hub: "Hub") -> None:
        self._hub = hub

    def _call(self, fn: Callable[..., str], *args: Any) -> Twin:
        try:
            return Twin(_json.loads(fn(*args)))
        except NotFoundError as e:
            raise DeviceNotFoundError(str(e)) from None

    def get(self, device_id: str, module_id: Optional[str] = None) -> Twin:
        """The twin. Raises DeviceNotFoundError for an unknown device or module."""
        return self._call(self._hub._server.twin_get, device_id, module_id or "")

    def update(self, device_id: str, patch: Optional[Mapping[str, Any]] = None, *,
               tags: Optional[Mapping[str, Any]] = None, desired: Optional[Mapping[str, Any]] = None,
               etag: Optional[str] = None, module_id: Optional[str] = None) -> Twin:
        """Merges ``tags`` and/or ``desired`` into the twin (JSON merge patch: ``None`` deletes a property,
        objects merge, everything else replaces). ``patch`` may instead be IoT Hub's body
        ``{"tags": {...}, "properties": {"desired": {...}}}``. With ``etag``, the update applies only if
        the twin still has that etag, else PreconditionFailedError (read it again and retry).
        Returns the updated twin once it is durable."""
        body = _body(patch, tags, desired)
        return self._call(self._hub._server.twin_update, device_id, module_id or "", body, False, etag or "")

    def replace(self, device_id: str, twin: Optional[Mapping[str, Any]] = None, *,
                tags: Optional[Mapping[str, Any]] = None, desired: Optional[Mapping[str, Any]] = None,
                etag: Optional[str] = None, module_id: Optional[str] = None) -> Twin:
        """Replaces tags and desired properties as a whole (what is not given becomes empty; reported
        properties are the device's and stay). The device is sent the full desired section."""
        body = _body(twin, tags, desired)
        return self._call(self._hub._server.twin_update, device_id, module_id or "", body, True, etag or "")

    async def _run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    async def get_async(self, device_id: str, module_id: Optional[str] = None) -> Twin:
        return await self._run(self.get, device_id, module_id)

    async def update_async(self, device_id: str, patch: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Twin:
        return await self._run(self.update, device_id, patch, **kwargs)

    async def replace_async(self, device_id: str, twin: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Twin:
        return await self._run(self.replace, device_id, twin, **kwargs)
