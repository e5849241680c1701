"""The identity registry: ``hub.devices``."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

from .errors import DeviceNotFoundError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from .hub import Hub

_NEVER = "0001-01-01T00:00:00Z"


def _iso(ms: int) -> str:
    if not ms:
        return _NEVER
    t = _dt.datetime.fromtimestamp(ms / 1000.0, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Device:
    """A device (or module) identity as the registry stores it."""

    device_id: str
    module_id: Optional[str]
    generation_id: str
    etag: str
    status: str  # "enabled" | "disabled"
    status_reason: Optional[str]
    auth_type: str  # "sas" | "selfSigned" | "certificateAuthority" | "none"
    primary_key: Optional[str]
    secondary_key: Optional[str]
    primary_thumbprint: Optional[str]
    secondary_thumbprint: Optional[str]
    iot_edge: bool
    connection_state: str  # "Connected" | "Disconnected"
    status_updated_ms: int
    connection_state_updated_ms: int
    hostname: str

    @classmethod
    def _from_core(cls, d: Dict[str, Any], hostname: str) -> "Device":
        return cls(
            device_id=d["device_id"],
            module_id=d["module_id"] or None,
            generation_id=d["generation_id"],
            etag=d["etag"],
            status="enabled" if d["enabled"] else "disabled",
            status_reason=d["status_reason"] or None,
            auth_type=d["auth_type"],
            primary_key=d["primary_key"] or None,
            secondary_key=d["secondary_key"] or None,
            primary_thumbprint=d["primary_thumbprint"] or None,
            secondary_thumbprint=d["secondary_thumbprint"] or None,
            iot_edge=bool(d["iot_edge"]),
            connection_state="Connected" if d["connected"] else "Disconnected",
            status_updated_ms=d["status_updated_ms"],
            connection_state_updated_ms=d["connection_state_updated_ms"],
            hostname=hostname,
        )

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    @property
    def connection_string(self) -> str:
        """``HostName=...;DeviceId=...;SharedAccessKey=...`` for the Azure IoT device SDKs."""
        parts = [f"HostName={self.hostname}", f"DeviceId={self.device_id}"]
        if self.module_id:
            parts.append(f"ModuleId={self.module_id}")
        if self.auth_type == "sas":
            parts.append(f"SharedAccessKey={self.primary_key}")
        else:
            parts.append("x509=true")
        return ";".join(parts)

    def to_iothub_json(self) -> Dict[str, Any]:
        """The identity in IoT Hub's REST shape (camelCase keys)."""
        d: Dict[str, Any] = {
            "deviceId": self.device_id,
            "generationId": self.generation_id,
            "etag": self.etag,
            "connectionState": self.connection_state,
            "connectionStateUpdatedTime": _iso(self.connection_state_updated_ms),
            "lastActivityTime": _NEVER,
            "cloudToDeviceMessageCount": 0,
            "authentication": {
                "type": self.auth_type,
                "symmetricKey": {"primaryKey": self.primary_key, "secondaryKey": self.secondary_key},
                "x509Thumbprint": {
                    "primaryThumbprint": self.primary_thumbprint,
                    "secondaryThumbprint": self.secondary_thumbprint,
                },
            },
        }
        if self.module_id:
            d["moduleId"] = self.module_id
        else:
            d.update(
                {
                    "status": self.status,
                    "statusReason": self.status_reason,
                    "statusUpdatedTime": _iso(self.status_updated_ms),
                    "capabilities": {"iotEdge": self.iot_edge},
                }
            )
        return d


class DeviceRegistry:
    """Create, read, update and delete device identities. Works whether or not the hub is started."""

    def __init__(self, hub: "Hub") -> None:
        self._hub = hub

    def _wrap(self, d: Dict[str, Any]) -> Device:
        return Device._from_core(d, self._hub.hostname)

    def create(
        self,
        device_id: str,
        *,
        primary_key: Optional[str] = None,
        secondary_key: Optional[str] = None,
        enabled: bool = True,
        status_reason: Optional[str] = None,
        auth_type: str = "sas",
        primary_thumbprint: Optional[str] = None,
        secondary_thumbprint: Optional[str] = None,
        iot_edge: bool = False,
    ) -> Device:
        """Registers a device. Keys are generated when not given. Raises AlreadyExistsError if it exists."""
        kw = dict(
            primary_key=primary_key,
            secondary_key=secondary_key,
            enabled=enabled,
            status_reason=status_reason,
            auth_type=auth_type,
            primary_thumbprint=primary_thumbprint,
            secondary_thumbprint=secondary_thumbprint,
            iot_edge=iot_edge,
        )
        return self._wrap(self._hub._server.device_create(device_id, "", kw))

    def get(self, device_id: str) -> Device:
        """Raises DeviceNotFoundError when the device is not registered."""
        try:
            return self._wrap(self._hub._server.device_get(device_id, ""))
        except NotFoundError as e:
            raise DeviceNotFoundError(str(e)) from None

    def update(self, device_id: str, *, etag: Optional[str] = None, **changes: Any) -> Device:
        """Changes some fields (enabled, status_reason, primary_key, secondary_key, auth_type, thumbprints,
        iot_edge). With ``etag``, fails with PreconditionFailedError if the device changed meanwhile."""
        allowed = {
            "enabled", "status_reason", "primary_key", "secondary_key", "auth_type",
            "primary_thumbprint", "secondary_thumbprint", "iot_edge",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"update() got unknown fields {sorted(unknown)}; allowed: {sorted(allowed)}")
        try:
            return self._wrap(self._hub._server.device_update(device_id, "", changes, etag or ""))
        except NotFoundError as e:
            raise DeviceNotFoundError(str(e)) from None

    def enable(self, device_id: str) -> Device:
        return self.update(device_id, enabled=True, status_reason="")

    def disable(self, device_id: str, reason: str = "") -> Device:
        """Disables the device; its live connections are closed at once and new ones refused."""
        return self.update(device_id, enabled=False, status_reason=reason)

    def delete(self, device_id: str, *, etag: Optional[str] = None) -> None:
        try:
            self._hub._server.device_delete(device_id, "", etag or "")
        except NotFoundError as e:
            raise DeviceNotFoundError(str(e)) from None

    def list(self, *, limit: Optional[int] = None, page_size: int = 1000) -> List[Device]:
        return list(self.iter(limit=limit, page_size=page_size))

    def iter(self, *, limit: Optional[int] = None, page_size: int = 1000) -> Iterator[Device]:
        after = ""
        n = 0
        while True:
            page = self._hub._server.device_list(after, page_size)
            for d in page:
                if limit is not None and n >= limit:
                    return
                n += 1
                yield self._wrap(d)
            if len(page) < page_size:
                return
            after = page[-1]["device_id"]

    def __iter__(self) -> Iterator[Device]:
        return self.iter()

    def __contains__(self, device_id: object) -> bool:
        if not isinstance(device_id, str):
            return False
        try:
            self.get(device_id)
            return True
        except DeviceNotFoundError:
            return False

    def __len__(self) -> int:
        return int(self.stats()["total"])

    def stats(self) -> Dict[str, int]:
        """``{"total", "enabled", "disabled", "connected"}``."""
        return dict(self._hub._server.device_stats())

    # ---- modules ----
    def create_module(self, device_id: str, module_id: str, *, primary_key: Optional[str] = None,
                      secondary_key: Optional[str] = None, managed_by: Optional[str] = None) -> Device:
        kw = dict(primary_key=primary_key, secondary_key=secondary_key, managed_by=managed_by)
        return self._wrap(self._hub._server.device_create(device_id, module_id, kw))

    def get_module(self, device_id: str, module_id: str) -> Device:
        return self._wrap(self._hub._server.device_get(device_id, module_id))

    def delete_module(self, device_id: str, module_id: str, *, etag: Optional[str] = None) -> None:
        self._hub._server.device_delete(device_id, module_id, etag or "")

    def modules(self, device_id: str) -> List[Device]:
        return [self._wrap(d) for d in self._hub._server.module_list(device_id)]
