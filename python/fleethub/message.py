"""Message: one device-to-cloud message as stored in the event log."""

from __future__ import annotations

import datetime as _dt
import json as _json
from typing import Any, Mapping, Sequence, Tuple


class Message:
    """A message read from the hub's event log: device telemetry or one of the hub's system events.

    ``body`` is the raw bytes; ``properties`` the application properties the device set;
    ``system_properties`` IoT Hub's (``message-id``, ``content-type``, ``iothub-connection-device-id``,
    ``iothub-enqueuedtime`` ...). ``partition`` and ``sequence_number`` locate it in the log; ``offset`` is
    the same number as a string (the Event Hubs convention).
    """

    __slots__ = (
        "partition",
        "sequence_number",
        "device_id",
        "module_id",
        "enqueued_time_ms",
        "body",
        "_sys",
        "_app",
    )

    def __init__(
        self,
        partition: int,
        sequence_number: int,
        device_id: str,
        module_id: str,
        enqueued_time_ms: int,
        body: bytes,
        system_properties: Sequence[Tuple[str, str]],
        properties: Sequence[Tuple[str, str]],
    ) -> None:
        self.partition = partition
        self.sequence_number = sequence_number
        self.device_id = device_id
        self.module_id = module_id or None
        self.enqueued_time_ms = enqueued_time_ms
        self.body = body
        self._sys = system_properties
        self._app = properties

    @classmethod
    def _from_core(cls, t: Tuple[Any, ...]) -> "Message":
        return cls(*t)

    @property
    def offset(self) -> str:
        return str(self.sequence_number)

    @property
    def enqueued_time(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.enqueued_time_ms / 1000.0, tz=_dt.timezone.utc)

    @property
    def properties(self) -> Mapping[str, str]:
        """Application properties, as the device sent them."""
        return dict(self._app)

    @property
    def system_properties(self) -> Mapping[str, str]:
        return dict(self._sys)

    @property
    def message_id(self) -> str | None:
        return self.system_properties.get("message-id")

    @property
    def correlation_id(self) -> str | None:
        return self.system_properties.get("correlation-id")

    @property
    def content_type(self) -> str | None:
        return self.system_properties.get("content-type")

    @property
    def content_encoding(self) -> str | None:
        return self.system_properties.get("content-encoding")

    @property
    def source(self) -> str:
        """IoT Hub's ``iothub-message-source``: ``"Telemetry"`` for device messages, or the system event
        kind (``"twinChangeEvents"``, ``"deviceLifecycleEvents"``, ``"deviceConnectionStateEvents"``)."""
        return self.system_properties.get("iothub-message-source", "Telemetry")

    def text(self) -> str:
        """The body decoded with its content-encoding (UTF-8 when none was given)."""
        enc = self.content_encoding or "utf-8"
        try:
            return self.body.decode(enc)
        except LookupError:
            return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.text())

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "sequence_number": self.sequence_number,
            "device_id": self.device_id,
            "module_id": self.module_id,
            "enqueued_time": self.enqueued_time,
            "body": self.body,
            "properties": dict(self._app),
            "system_properties": dict(self._sys),
        }

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 40 else self.body[:40] + b"..."
        return (
            f"Message(device_id={self.device_id!r}, partition={self.partition}, "
            f"sequence_number={self.sequence_number}, body={body!r})"
        )
