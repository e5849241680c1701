"""Hub: one embedded fleethub instance (C++ on its own threads; the GIL is released while it runs)."""

from __future__ import annotations

import atexit
import datetime as _dt
import logging
import os
import signal
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional, TypeVar, Union

from ._logging import LogPump
from ._native import HubServer, make_sas_token_native
from .devices import DeviceRegistry
from .errors import InvalidArgumentError
from ._completions import CompletionPump
from .c2d import CloudToDevice
from .events import EventLog
from .handlers import ConnectionStateEvent, HandlerDispatcher, LifecycleEvent, TwinChangeEvent
from .methods import DirectMethods
from .queries import QueryResult
from .twins import TwinRegistry

_F = TypeVar("_F", bound=Callable[..., Any])

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

# Hubs still open at interpreter exit are closed first: pending commits are flushed, and no fleethub thread is
# left blocked inside C++ when Python finalizes (a thread re-taking the GIL then would abort the process).
_open_hubs: "weakref.WeakSet[Hub]" = weakref.WeakSet()


@atexit.register
def _close_open_hubs() -> None:
    for hub in list(_open_hubs):
        try:
            hub.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


class Hub:
    """A self-hosted IoT hub that unmodified Azure IoT device SDKs connect to.

    >>> hub = Hub("./data", hostname="localhost")
    >>> with hub:
    ...     dev = hub.devices.create("dev1")
    ...     print(dev.connection_string)

    ``mqtt_port`` is the MQTT-over-TLS listener (8883, fixed in the Azure SDKs; ``None`` turns it off,
    ``0`` picks a free port). ``mqtt_plain_port`` is a plain-TCP listener for local development (off by
    default). ``https_port`` (443) carries the service REST API (``azure-iot-hub``), the device HTTPS API and
    MQTT over WebSockets (``websockets=True`` in the device SDK, which always uses 443). With no ``tls_cert``/``tls_key`` the hub makes its own CA in ``<data_dir>/certs``; pass
    ``hub.ca_cert`` (PEM text) to the SDK as ``server_verification_cert``.
    ``durability="relaxed"`` trades the fsync of each group commit for speed, explicitly.
    """

    def __init__(
        self,
        data_dir: Union[str, "os.PathLike[str]"] = "./fleethub-data",
        *,
        hostname: str = "localhost",
        mqtt_port: Optional[int] = 8883,
        mqtt_plain_port: Optional[int] = None,
        https_port: Optional[int] = 443,
        bind: str = "0.0.0.0",
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        durability: str = "durable",
        partitions: int = 4,
        io_threads: int = 0,
        retention: Union[_dt.timedelta, float] = _dt.timedelta(days=1),
        retention_bytes: int = 0,
        log_level: Union[int, str] = logging.INFO,
        logger: Optional[logging.Logger] = None,
        c2d_max_queue_depth: int = 50,
        c2d_default_ttl: Union[_dt.timedelta, float] = _dt.timedelta(hours=1),
        c2d_max_delivery_count: int = 10,
        c2d_feedback_interval: Union[_dt.timedelta, float] = _dt.timedelta(seconds=15),
        **kwargs: Any,
    ) -> None:
        if "mqtt_tls_port" in kwargs:  # accepted alias
            mqtt_port = kwargs.pop("mqtt_tls_port")
        if kwargs:
            raise TypeError(f"Hub() got unexpected arguments {sorted(kwargs)}")
        if durability not in ("durable", "relaxed"):
            raise InvalidArgumentError('durability must be "durable" or "relaxed"')
        for name, port in (("mqtt_port", mqtt_port), ("mqtt_plain_port", mqtt_plain_port), ("https_port", https_port)):
            if port is not None and not (0 <= int(port) <= 65535):
                raise InvalidArgumentError(f"{name} must be 0..65535 (0 = any free port) or None, got {port}")
        if (tls_cert is None) != (tls_key is None):
            raise InvalidArgumentError("give both tls_cert and tls_key, or neither (the hub then makes its own CA)")
        if partitions < 1 or partitions > 32:
            raise InvalidArgumentError("partitions must be 1..32 (IoT Hub's range)")
        if isinstance(log_level, str):
            log_level = _LEVELS[log_level.lower()]
        ret_s = retention.total_seconds() if isinstance(retention, _dt.timedelta) else float(retention)

        def _secs(v: Union[_dt.timedelta, float]) -> float:
            return v.total_seconds() if isinstance(v, _dt.timedelta) else float(v)

        if not 1 <= c2d_max_queue_depth <= 5000:
            raise InvalidArgumentError("c2d_max_queue_depth must be 1..5000 (IoT Hub's is 50)")
        if not 60 <= _secs(c2d_default_ttl) <= 48 * 3600:
            raise InvalidArgumentError("c2d_default_ttl must be 1 minute..48 hours (IoT Hub's default is 1 hour)")
        if not 1 <= c2d_max_delivery_count <= 100:
            raise InvalidArgumentError("c2d_max_delivery_count must be 1..100 (IoT Hub's default is 10)")
        if not 0 <= _secs(c2d_feedback_interval) <= 3600:
            raise InvalidArgumentError("c2d_feedback_interval must be 0..3600 seconds (IoT Hub batches for 15 s)")
        self._logger = logger or logging.getLogger("fleethub")
        cfg: Dict[str, Any] = {
            "data_dir": os.fspath(data_dir),
            "hostname": hostname,
            "bind_address": bind,
            "mqtt_tls_port": mqtt_port,
            "mqtt_plain_port": mqtt_plain_port,
            "https_port": https_port,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "durable": durability == "durable",
            "partitions": partitions,
            "io_threads": io_threads,
            "retention_s": int(ret_s),
            "retention_bytes": retention_bytes,
            "log_level": int(log_level),
            "c2d_max_queue_depth": int(c2d_max_queue_depth),
            "c2d_default_ttl_ms": int(_secs(c2d_default_ttl) * 1000),
            "c2d_max_delivery_count": int(c2d_max_delivery_count),
            "c2d_feedback_interval_ms": int(_secs(c2d_feedback_interval) * 1000),
        }
        self._server = HubServer(cfg)
        self._pump: Optional[LogPump] = LogPump(self._server, self._logger)
        self._stopped = threading.Event()
        self._stop_requested = False
        self.data_dir = os.fspath(data_dir)
        self.devices = DeviceRegistry(self)
        self.events = EventLog(self)
        self._completions = CompletionPump(self._server)
        self.twins = TwinRegistry(self)
        self.methods = DirectMethods(self)
        self.c2d = CloudToDevice(self)
        self._handlers = HandlerDispatcher(self)
        _open_hubs.add(self)

    # ---- lifecycle ----
    def start(self) -> "Hub":
        """Makes certificates if needed and starts listening. Raises UnavailableError if a port is taken."""
        self._stopped.clear()
        self._server.start()
        return self

    def stop(self) -> None:
        """Closes listeners and connections. The registry and event log stay readable until close()."""
        self._server.stop()
        self._stopped.set()

    def close(self) -> None:
        """Stops and closes the data directory (pending commits are flushed first)."""
        if self._server.closed:
            return
        self._server.stop()
        self._stopped.set()
        self._handlers.stop()  # its thread reads the store: stop it before the store closes
        self._server.close()
        if self._pump:
            self._pump.stop()
            self._pump = None
        _open_hubs.discard(self)

    def __enter__(self) -> "Hub":
        if not self._server.running:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def running(self) -> bool:
        return bool(self._server.running)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until stop() (or timeout). Returns True if the hub stopped."""
        return self._stopped.wait(timeout)

    def install_stop_signals(self) -> None:
        """Makes SIGINT and SIGTERM end serve_forever() (main thread only). Called by serve_forever();
        call it earlier to cover a signal that arrives before serving starts."""
        if threading.current_thread() is not threading.main_thread():
            return

        def request_stop(*_: Any) -> None:
            # Only a plain assignment: a signal handler runs between bytecodes of the main thread and must
            # not take a lock that thread may hold (Event.set() inside Event.wait() would deadlock).
            self._stop_requested = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)

    def serve_forever(self) -> None:
        """Starts (if needed) and blocks until SIGINT/SIGTERM or stop(), then closes."""
        self.install_stop_signals()
        try:
            if not self.running and not self._stop_requested:
                self.start()
            while not self._stop_requested and not self._stopped.is_set():
                time.sleep(0.2)
        finally:
            self.close()

    # ---- facts ----
    @property
    def hostname(self) -> str:
        return str(self._server.hostname)

    @property
    def ports(self) -> Dict[str, Optional[int]]:
        """Bound ports: ``{"mqtts": 8883, "mqtt": None, "https": 443}`` (None: that listener is off)."""
        return dict(self._server.ports())

    @property
    def ca_cert_path(self) -> Optional[str]:
        """The hub's own CA certificate (PEM file), or None with a user-supplied certificate."""
        p = self._server.ca_cert_path
        if p:
            return str(p)
        own = os.path.join(self.data_dir, "certs", "ca.pem")
        return own if os.path.exists(own) else None

    @property
    def ca_cert(self) -> Optional[str]:
        """PEM text of the hub's CA: what the Azure SDKs take as ``server_verification_cert``."""
        p = self.ca_cert_path
        if not p:
            return None
        with open(p) as f:
            return f.read()

    def service_connection_string(self, policy: str = "iothubowner") -> str:
        """Connection string for the ``azure-iot-hub`` service SDK. When the HTTPS listener runs on a port
        other than 443, ``HostName`` carries it (``localhost:8443``): the SDK's REST client honours it."""
        host = self.hostname
        if self.running:
            port = self.ports.get("https")
            if port is not None and port != 443:
                host = f"{host}:{port}"
        for name, _rights, primary, _secondary in self._server.policy_list():
            if name == policy:
                return f"HostName={host};SharedAccessKeyName={name};SharedAccessKey={primary}"
        raise InvalidArgumentError(f"no shared access policy named {policy!r}")

    def policies(self) -> Dict[str, Dict[str, str]]:
        """Shared access policies: name -> {"rights", "primary_key", "secondary_key"}."""
        return {
            n: {"rights": r, "primary_key": p, "secondary_key": s} for n, r, p, s in self._server.policy_list()
        }

    # ---- queries ----
    def query(self, text: str, *, page_size: int = 100, continuation: Optional[str] = None) -> QueryResult:
        """Runs an IoT Hub query (``SELECT ... FROM devices | devices.modules [WHERE ...] [GROUP BY ...]``)
        over the committed twins. Returns a lazy iterator of results (dicts) with ``pages()`` and
        ``to_pandas()``. Raises InvalidArgumentError naming the position of a syntax error."""
        return QueryResult(self, text, page_size, continuation)

    # ---- handlers (run on the hub's Python dispatcher thread, in log order) ----
    def on_twin_change(self, fn: _F) -> _F:
        """Decorator: ``fn(event: TwinChangeEvent)`` runs for every twin change (back-end updates and
        device reported patches) committed from now on. A handler that raises is logged and counted in
        ``handler_errors``; it never stops the hub."""
        self._handlers.add("twin", fn)
        return fn

    def on_connection_state(self, fn: _F) -> _F:
        """Decorator: ``fn(event: ConnectionStateEvent)`` runs when a device or module connects or
        disconnects (``event.connected``)."""
        self._handlers.add("connection", fn)
        return fn

    def on_device_lifecycle(self, fn: _F) -> _F:
        """Decorator: ``fn(event: LifecycleEvent)`` runs when an identity is created or deleted."""
        self._handlers.add("lifecycle", fn)
        return fn

    @property
    def handler_errors(self) -> int:
        """How many times a handler raised."""
        return self._handlers.errors

    @property
    def handler_calls(self) -> int:
        """How many handler calls were made."""
        return self._handlers.calls

    def _publish_to_client(self, client_id: str, topic: str, payload: bytes, qos: int = 1) -> None:
        """Internal primitive under C2D, twins and methods: publish through a client's MQTT session
        (stored and redelivered for a persistent session until PUBACK). Not a public API."""
        self._server.publish_to_client(client_id, topic, bytes(payload), qos)


def make_sas_token(resource: str, key: str, expiry: Union[int, float, None] = None, ttl: float = 3600,
                   key_name: str = "") -> str:
    """A SAS token as the Azure SDKs build it: ``resource`` like ``"host/devices/dev1"``, ``key`` base64."""
    exp = int(expiry if expiry is not None else time.time() + ttl)
    return str(make_sas_token_native(resource, key, exp, key_name))
