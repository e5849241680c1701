"""fleethub: a self-hosted, embeddable IoT hub that the unmodified Azure IoT SDKs connect to."""

from __future__ import annotations

from ._native import core_version as __version__
from .devices import Device, DeviceRegistry
from .errors import (
    AlreadyExistsError,
    DeviceNotFoundError,
    DeviceNotOnlineError,
    Error,
    ForbiddenError,
    HubNotRunningError,
    InvalidArgumentError,
    MethodTimeoutError,
    NotFoundError,
    PreconditionFailedError,
    QueueFullError,
    SchemaMismatchError,
    StorageError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
)
from .c2d import C2DMessageInfo, CloudToDevice, FeedbackBatch, FeedbackRecord
from .events import SOURCES, EventBatch, EventLog, EventTail, partition_for
from .handlers import ConnectionStateEvent, LifecycleEvent, TwinChangeEvent
from .hub import Hub, make_sas_token
from .message import Message
from .methods import DirectMethods, MethodResult
from .queries import QueryPage, QueryResult
from .twins import Twin, TwinRegistry

__all__ = [
    "QueryPage",
    "QueryResult",
    "__version__",
    "Hub",
    "Device",
    "DeviceRegistry",
    "EventBatch",
    "EventLog",
    "EventTail",
    "Message",
    "Twin",
    "CloudToDevice",
    "C2DMessageInfo",
    "FeedbackBatch",
    "FeedbackRecord",
    "QueueFullError",
    "TwinRegistry",
    "DirectMethods",
    "MethodResult",
    "TwinChangeEvent",
    "ConnectionStateEvent",
    "LifecycleEvent",
    "SOURCES",
    "make_sas_token",
    "partition_for",
    "Error",
    "InvalidArgumentError",
    "NotFoundError",
    "DeviceNotFoundError",
    "DeviceNotOnlineError",
    "MethodTimeoutError",
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
