"""fleethub: a self-hosted, embeddable IoT hub that the unmodified Azure IoT SDKs connect to."""

from __future__ import annotations

from ._native import core_version as __version__
from .devices import Device, DeviceRegistry
from .errors import (
    AlreadyExistsError,
    DeviceNotFoundError,
    Error,
    ForbiddenError,
    HubNotRunningError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionFailedError,
    SchemaMismatchError,
    StorageError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
)
from .events import EventBatch, EventLog, EventTail, partition_for
from .hub import Hub, make_sas_token
from .message import Message

__all__ = [
    "__version__",
    "Hub",
    "Device",
    "DeviceRegistry",
    "EventBatch",
    "EventLog",
    "EventTail",
    "Message",
    "make_sas_token",
    "partition_for",
    "Error",
    "InvalidArgumentError",
    "NotFoundError",
    "DeviceNotFoundError",
    "AlreadyExistsError",
    "PreconditionFailedError",
    "UnauthorizedError",
    "ForbiddenError",
    "TooLargeError",
    "StorageError",
    "SchemaMismatchError",
    "UnavailableError",
    "HubNotRunningError",
]
