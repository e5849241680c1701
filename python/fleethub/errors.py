"""The fleethub exception tree. Every error raised by fleethub is a :class:`fleethub.Error`."""

from __future__ import annotations


class Error(Exception):
    """Base class of every fleethub error."""


class InvalidArgumentError(Error, ValueError):
    """A value broke a rule (device-id characters, key format, port range); the message names the rule."""


class NotFoundError(Error, LookupError):
    """No such device, module, policy or partition."""


class DeviceNotFoundError(NotFoundError):
    """The device (or module) is not registered."""


class DeviceNotOnlineError(NotFoundError):
    """The device is not connected, or has not subscribed to direct methods (IoT Hub 404103).

    Pass ``connect_timeout=`` to ``hub.methods.invoke`` to wait for it to come online."""


class MethodTimeoutError(Error, TimeoutError):
    """The device did not answer the direct method within ``timeout`` seconds (IoT Hub 504101)."""


class AlreadyExistsError(Error):
    """An identity with that id already exists; use ``hub.devices.update`` or delete it first."""


class PreconditionFailedError(Error):
    """The etag given no longer matches: the object changed since it was read. Read it again and retry."""


class UnauthorizedError(Error):
    """Credentials were refused."""


class ForbiddenError(Error):
    """Authenticated, but not allowed."""


class QueueFullError(ForbiddenError):
    """The device's cloud-to-device queue is full (IoT Hub 403004 DeviceMaximumQueueDepthExceeded): wait for
    the device to take its messages, or ``hub.c2d.purge(device_id)``."""


class TooLargeError(Error):
    """A size limit was exceeded."""


class StorageError(Error):
    """The data directory failed (disk full, map full, in use by another process, corrupt)."""


class SchemaMismatchError(StorageError):
    """The data directory was written by an incompatible fleethub version."""


class UnavailableError(Error):
    """The hub cannot do that now (not started, already closed, port in use)."""


class HubNotRunningError(UnavailableError):
    """The operation needs a started hub: call ``hub.start()`` or use ``with hub:``."""


__all__ = [
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
    "QueueFullError",
    "TooLargeError",
    "StorageError",
    "SchemaMismatchError",
    "UnavailableError",
    "HubNotRunningError",
]
