"""Shared fixtures and helpers for the fleethub pytest suite.

Two kinds of clients are used:

* :class:`PahoDevice` wraps an unmodified paho-mqtt 1.6.1 client configured the way the Azure IoT SDKs
  configure theirs (client id = device id, IoT Hub username, SAS-token password, MQTT 3.1.1).
* :class:`RawMqtt` speaks MQTT 3.1.1 over a plain socket from hand-built bytes, for protocol-level tests
  (packets a well-behaved library would never send, or behaviour such as not acknowledging a PUBLISH).

Every wait in these helpers is bounded (10 s unless a test asks for less).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# The suite tests whichever fleethub is importable: the installed wheel (tools/test.sh), or the in-tree package
# with PYTHONPATH=python after a dev build. Child processes get the same one.
import fleethub  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

PYTHON_DIR = Path(fleethub.__file__).resolve().parent.parent

API_VERSION = "2021-04-12"
WAIT = 10.0  # the upper bound of every wait in this suite

# MQTT control packet types
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# CONNACK return codes (MQTT 3.1.1 §3.2.2.3)
RC_ACCEPTED = 0
RC_BAD_PROTOCOL = 1
RC_ID_REJECTED = 2
RC_UNAVAILABLE = 3
RC_BAD_CREDENTIALS = 4
RC_NOT_AUTHORIZED = 5


# ---------------------------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------------------------
def username_for(hostname: str, device_id: str) -> str:
    return f"{hostname}/{device_id}/?api-version={API_VERSION}"


def sas_for(hostname: str, device_id: str, key: str, *, expiry: Optional[int] = None, ttl: float = 3600) -> str:
    return fleethub.make_sas_token(f"{hostname}/devices/{device_id}", key, expiry=expiry, ttl=ttl)


def telemetry_topic(device_id: str, bag: str = "") -> str:
    return f"devices/{device_id}/messages/events/{bag}"


def devicebound_filter(device_id: str) -> str:
    return f"devices/{device_id}/messages/devicebound/#"


# ---------------------------------------------------------------------------------------------------------
# Hub fixtures
# ---------------------------------------------------------------------------------------------------------
class HubFactory:
    """Opens hubs on a data dir and closes whatever is still open at teardown (for restart tests)."""

    def __init__(self) -> None:
        self.hubs: List[fleethub.Hub] = []

    def __call__(self, data_dir, *, start: bool = True, **kw) -> fleethub.Hub:
        kw.setdefault("hostname", "localhost")
        kw.setdefault("mqtt_port", 0)
        kw.setdefault("https_port", 0)
        kw.setdefault("mqtt_plain_port", 0)
        hub = fleethub.Hub(data_dir, **kw)
        self.hubs.append(hub)
        if start:
            hub.start()
        return hub

    def close_all(self) -> None:
        for h in reversed(self.hubs):
            try:
                h.close()
            except Exception:  # pragma: no cover - teardown best effort
                pass


@pytest.fixture
def hub_factory():
    f = HubFactory()
    yield f
    f.close_all()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "hubdata"
    return d


@pytest.fixture
def hub(hub_factory, data_dir) -> fleethub.Hub:
    """A started hub on a fresh data dir: MQTT/TLS and plain MQTT on free ports."""
    return hub_factory(data_dir, mqtt_port=0, mqtt_plain_port=0)


@pytest.fixture
def device(hub) -> fleethub.Device:
    return hub.devices.create("dev1")


# ---------------------------------------------------------------------------------------------------------
# paho-mqtt client helper
# ---------------------------------------------------------------------------------------------------------
class PahoDevice:
    """A paho 1.6.1 client with IoT Hub credentials and thread-safe records of what happened."""

    def __init__(
        self,
        hub: fleethub.Hub,
        device_id: str,
        key: Optional[str],
        *,
        clean_session: bool = False,
        tls: bool = False,
        client_id: Optional[str] = None,
        username: Optional[str] = "__default__",
        password: Optional[str] = "__default__",
        keepalive: int = 60,
        ssl_context: Optional[ssl.SSLContext] = None,
        port: Optional[int] = None,
        max_inflight: int = 100,
    ) -> None:
        self.hub = hub
        self.device_id = device_id
        self.tls = tls
        self.keepalive = keepalive
        self.port = port if port is not None else hub.ports["mqtts" if tls else "mqtt"]
        assert self.port, "the listener needed by this client is off"
        cid = device_id if client_id is None else client_id
        self.client = mqtt.Client(client_id=cid, clean_session=clean_session, protocol=mqtt.MQTTv311,
                                  reconnect_on_failure=False)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        if username == "__default__":
            username = username_for(hub.hostname, device_id)
        if password == "__default__":
            password = sas_for(hub.hostname, device_id, key) if key else None
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            if ssl_context is not None:
                self.client.tls_set_context(ssl_context)
            else:
                self.client.tls_set(ca_certs=hub.ca_cert_path)
        self._lock = threading.Lock()
        self.connack = threading.Event()
        self.disconnected = threading.Event()
        self.rc: Optional[int] = None
        self.session_present: Optional[int] = None
        self.disconnect_rc: Optional[int] = None
        self.acked: List[int] = []  # paho mids whose PUBACK arrived, in order
        self.acked_event = threading.Condition(self._lock)
        self.subacks: Dict[int, Tuple[int, ...]] = {}
        self.suback_event = threading.Condition(self._lock)
        self.messages: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self._loop_started = False

    # callbacks (paho's network thread)
    def _on_connect(self, client, userdata, flags, rc):
        self.rc = rc
        self.session_present = flags.get("session present")
        self.connack.set()

    def _on_disconnect(self, client, userdata, rc):
        self.disconnect_rc = rc
        self.disconnected.set()

    def _on_publish(self, client, userdata, mid):
        with self._lock:
            self.acked.append(mid)
            self.acked_event.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted_qos):
        with self._lock:
            self.subacks[mid] = tuple(granted_qos)
            self.suback_event.notify_all()

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    # actions
    def connect(self, timeout: float = WAIT) -> int:
        """Connects and returns the CONNACK return code (raises if no CONNACK arrives within timeout)."""
        self.connack.clear()
        self.disconnected.clear()
        host = "localhost" if self.tls else "127.0.0.1"
        self.client.connect(host, self.port, keepalive=self.keepalive)
        if not self._loop_started:
            self.client.loop_start()
            self._loop_started = True
        if not self.connack.wait(timeout):
            raise AssertionError(f"no CONNACK within {timeout}s")
        return int(self.rc)

    def publish(self, topic: str, payload, qos: int = 1) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=qos)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"paho refused to publish: {mqtt.error_string(info.rc)}"
        return info

    def wait_acked(self, mids: Iterable[int], timeout: float = WAIT) -> None:
        want = set(mids)
        deadline = time.monotonic() + timeout
        with self._lock:
            while not want.issubset(self.acked):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(want - set(self.acked))
                    raise AssertionError(f"{len(missing)} publishes never PUBACKed, e.g. {missing[:5]}")
                self.acked_event.wait(left)

    def subscribe(self, topic: str, qos: int = 1, timeout: float = WAIT) -> Tuple[int, ...]:
        rc, mid = self.client.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        deadline = time.monotonic() + timeout
        with self._lock:
            while mid not in self.subacks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no SUBACK")
                self.suback_event.wait(left)
            return self.subacks[mid]

    def next_message(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def disconnect(self, timeout: float = WAIT) -> None:
        self.client.disconnect()
        self.disconnected.wait(timeout)

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:  # pragma: no cover
            pass
        if self._loop_started:
            self.client.loop_stop()
            self._loop_started = False


def mqtt_client(hub: fleethub.Hub, device_id: str, key: Optional[str], clean_session: bool = False,
                tls: bool = False, **kw) -> PahoDevice:
    """A paho client for ``device_id`` with a SAS token made from ``key`` (not yet connected)."""
    return PahoDevice(hub, device_id, key, clean_session=clean_session, tls=tls, **kw)


@pytest.fixture
def paho_clients():
    """Creates PahoDevice objects and stops their network threads at teardown."""
    made: List[PahoDevice] = []

    def make(hub, device_id, key, clean_session=False, tls=False, **kw) -> PahoDevice:
        c = mqtt_client(hub, device_id, key, clean_session=clean_session, tls=tls, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def wait_until(pred, timeout: float = WAIT, interval: float = 0.02) -> bool:
    """Polls ``pred`` until it is true (returns True) or ``timeout`` passes (returns False)."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------------
# Raw MQTT 3.1.1 over a socket
# ---------------------------------------------------------------------------------------------------------
def enc_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def enc_str(s) -> bytes:
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + enc_varint(len(body)) + body


def connect_packet(client_id: str, username: Optional[str] = None, password: Optional[str] = None, *,
                   clean_session: bool = False, keepalive: int = 60, level: int = 4,
                   protocol_name: str = "MQTT") -> bytes:
    flags = 0
    if clean_session:
        flags |= 0x02
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = enc_str(protocol_name) + bytes([level, flags]) + struct.pack("!H", keepalive) + enc_str(client_id)
    if username is not None:
        body += enc_str(username)
    if password is not None:
        body += enc_str(password)
    return packet(CONNECT, 0, body)


def publish_packet(topic: str, payload: bytes = b"", *, qos: int = 0, packet_id: int = 0, dup: bool = False,
                   retain: bool = False) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = enc_str(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    return packet(PUBLISH, flags, body + bytes(payload))


def subscribe_packet(packet_id: int, filters: Sequence[Tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(enc_str(f) + bytes([q]) for f, q in filters)
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe_packet(packet_id: int, filters: Sequence[str]) -> bytes:
    return packet(UNSUBSCRIBE, 0x02, struct.pack("!H", packet_id) + b"".join(enc_str(f) for f in filters))


def puback_packet(packet_id: int) -> bytes:
    return packet(PUBACK, 0, struct.pack("!H", packet_id))


PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
DISCONNECT_PACKET = bytes([DISCONNECT << 4, 0])


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    # PUBLISH accessors
    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 0x01)

    def publish_parts(self) -> Tuple[str, Optional[int], bytes]:
        assert self.type == PUBLISH, f"not a PUBLISH: type {self.type}"
        (tlen,) = struct.unpack_from("!H", self.body, 0)
        topic = self.body[2:2 + tlen].decode()
        pos = 2 + tlen
        pid = None
        if self.qos:
            (pid,) = struct.unpack_from("!H", self.body, pos)
            pos += 2
        return topic, pid, self.body[pos:]

    @property
    def packet_id(self) -> int:
        if self.type == PUBLISH:
            return self.publish_parts()[1]
        return struct.unpack_from("!H", self.body, 0)[0]


class ConnectionClosed(Exception):
    pass


class RawMqtt:
    """A hand-driven MQTT connection. ``read_packet`` returns the next packet or raises ConnectionClosed."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, tls_ca: Optional[str] = None,
                 timeout: float = WAIT) -> None:
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            s = ctx.wrap_socket(s, server_hostname=host)
        self.sock = s
        self.buf = bytearray()
        self.closed = False

    # sending
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Sends, returning False instead of raising when the hub already closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return False

    # receiving
    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the hub in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from the hub in time") from None
        except (ConnectionResetError, ConnectionAbortedError, ssl.SSLError) as e:
            self.closed = True
            raise ConnectionClosed(str(e)) from None
        if not chunk:
            self.closed = True
            raise ConnectionClosed("EOF")
        self.buf += chunk

    def read_packet(self, timeout: float = WAIT) -> Packet:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                mult, length, i = 1, 0, 1
                complete_header = False
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        complete_header = True
                        break
                if complete_header and len(self.buf) >= i + length:
                    first = self.buf[0]
                    body = bytes(self.buf[i:i + length])
                    del self.buf[:i + length]
                    return Packet(first >> 4, first & 0x0F, body)
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float = WAIT) -> Packet:
        p = self.read_packet(timeout)
        assert p.type == ptype, f"expected packet type {ptype}, got {p.type} (flags {p.flags:#x}, body {p.body[:40]!r})"
        return p

    def wait_closed(self, timeout: float = WAIT) -> bool:
        """True once the hub has closed the connection (packets still in flight are discarded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.read_packet(max(0.0, deadline - time.monotonic()) or 0.001)
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False

    def is_open_after(self, seconds: float) -> bool:
        """True if the connection stays open (PINGREQ answered) after ``seconds``."""
        time.sleep(seconds)
        if not self.try_send(PINGREQ_PACKET):
            return False
        try:
            while True:
                p = self.read_packet(2.0)
                if p.type == PINGRESP:
                    return True
        except (ConnectionClosed, TimeoutError):
            return False

    # conversations
    def mqtt_connect(self, client_id: str, username: Optional[str] = None, password: Optional[str] = None, *,
                     clean_session: bool = False, keepalive: int = 60, timeout: float = WAIT) -> Tuple[int, int]:
        """Sends CONNECT; returns (return code, session-present flag) from the CONNACK."""
        self.send(connect_packet(client_id, username, password, clean_session=clean_session, keepalive=keepalive))
        p = self.expect(CONNACK, timeout)
        assert len(p.body) == 2
        return p.body[1], p.body[0] & 0x01

    def subscribe(self, packet_id: int, filters: Sequence[Tuple[str, int]], timeout: float = WAIT) -> List[int]:
        self.send(subscribe_packet(packet_id, filters))
        p = self.expect(SUBACK, timeout)
        assert p.packet_id == packet_id
        return list(p.body[2:])

    def ping(self, timeout: float = WAIT) -> None:
        self.send(PINGREQ_PACKET)
        self.expect(PINGRESP, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


@pytest.fixture
def raw_clients():
    """Makes RawMqtt connections and closes them at teardown."""
    made: List[RawMqtt] = []

    def make(port: int, **kw) -> RawMqtt:
        c = RawMqtt(port, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def raw_device(hub: fleethub.Hub, dev: fleethub.Device, *, clean_session: bool = False, keepalive: int = 60,
               client_id: Optional[str] = None) -> Tuple[RawMqtt, int]:
    """A RawMqtt connection for ``dev`` on the plain listener, CONNECTed; returns (client, session_present)."""
    c = RawMqtt(hub.ports["mqtt"])
    rc, sp = c.mqtt_connect(client_id or dev.device_id, username_for(hub.hostname, dev.device_id),
                            sas_for(hub.hostname, dev.device_id, dev.primary_key),
                            clean_session=clean_session, keepalive=keepalive)
    assert rc == RC_ACCEPTED, f"CONNACK {rc}"
    return c, sp


def publish_many(hub: fleethub.Hub, dev: fleethub.Device, payloads: Sequence[bytes], bag: str = "",
                 *, window: int = 200) -> None:
    """Publishes ``payloads`` as QoS 1 telemetry of ``dev`` over a raw connection and waits for every PUBACK
    (a clean session, so nothing lingers)."""
    c, _ = raw_device(hub, dev, clean_session=True)
    try:
        topic = telemetry_topic(dev.device_id, bag)
        pid = 0
        sent: List[int] = []
        acked: List[int] = []
        i = 0
        while i < len(payloads) or len(acked) < len(sent):
            while i < len(payloads) and len(sent) - len(acked) < window:
                pid = pid % 65535 + 1
                c.send(publish_packet(topic, payloads[i], qos=1, packet_id=pid))
                sent.append(pid)
                i += 1
            p = c.expect(PUBACK)
            acked.append(p.packet_id)
        assert acked == sent, "PUBACKs out of order or missing"
        c.send(DISCONNECT_PACKET)
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------------
# logging capture
# ---------------------------------------------------------------------------------------------------------
class RecordCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: List[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def find(self, event: str, **fields) -> List[logging.LogRecord]:
        with self._lock2:
            recs = list(self.records)
        out = []
        for r in recs:
            if getattr(r, "fleethub_event", None) != event:
                continue
            f = getattr(r, "fleethub_fields", {})
            if all(f.get(k) == v for k, v in fields.items()):
                out.append(r)
        return out

    def wait_for(self, event: str, timeout: float = 5.0, **fields) -> List[logging.LogRecord]:
        found: List[logging.LogRecord] = []

        def pred():
            found[:] = self.find(event, **fields)
            return bool(found)

        wait_until(pred, timeout)
        return found


@pytest.fixture
def fleethub_records():
    """Collects the records on the ``fleethub`` logger (and its children) at DEBUG and above."""
    log = logging.getLogger("fleethub")
    h = RecordCollector()
    old = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(h)
    yield h
    log.removeHandler(h)
    log.setLevel(old)


# ---------------------------------------------------------------------------------------------------------
# SDK hub: fixed port 8883 (the Azure SDKs always connect there)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sdk_hub(tmp_path_factory):
    """One hub per SDK test module, listening for MQTT/TLS on 8883 with hostname ``localhost`` (module scope:
    port 8883 is free again for other tests, e.g. the examples, once the module is done)."""
    d = tmp_path_factory.mktemp("sdkhub")
    hub = fleethub.Hub(d, hostname="localhost", mqtt_port=8883, mqtt_plain_port=None, https_port=443)
    hub.start()
    yield hub
    hub.close()


def start_serve(args: List[str], stderr: Optional[int] = subprocess.PIPE) -> Tuple["subprocess.Popen[str]", str]:
    """Starts `python -m fleethub serve ARGS` and returns (process, banner text up to its ready line)."""
    proc = subprocess.Popen([sys.executable, "-m", "fleethub", "serve", *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=subprocess_env())
    lines: List[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Register a device"):
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(20)
    return proc, "".join(lines)


def subprocess_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pytest_configure(config):
    # paho 1.6.1 and azure-iot-device 2.14.0 build their SSL contexts with deprecated protocol constants
    config.addinivalue_line("filterwarnings", r"ignore:ssl\.PROTOCOL_TLS.*is deprecated:DeprecationWarning")
