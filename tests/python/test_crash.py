"""Crash safety: every PUBACKed message survives a SIGKILL of the hub process (PUBACK follows the commit)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Set, Tuple

import paho.mqtt.client as mqtt
import pytest

import fleethub
from conftest import publish_many, sas_for, start_serve, subprocess_env, telemetry_topic, username_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

DEVICE = "crash-dev"


def _spawn_hub(data_dir) -> Tuple[subprocess.Popen, int, str]:
    """Starts `python -m fleethub serve` (plain MQTT only) and returns (process, port, device key)."""
    proc, banner = start_serve(
        ["--data-dir", str(data_dir), "--hostname", "localhost", "--mqtt-port", "off", "--mqtt-plain-port", "0",
         "--https-port", "off", "--create-device", DEVICE, "--log-level", "warning"], stderr=subprocess.DEVNULL)
    port = key = None
    lines = banner.splitlines()
    for line in lines:
        m = re.match(r"\s*MQTT plain\s+(\d+)", line)
        if m:
            port = int(m.group(1))
        m = re.match(r"\s*device\s+(HostName=\S+)", line)
        if m:
            key = dict(kv.split("=", 1) for kv in m.group(1).split(";"))["SharedAccessKey"]
    if port is None or key is None:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the hub did not start: {''.join(lines)!r}")
    return proc, port, key


class Streamer:
    """Publishes QoS 1 messages with unique ids as fast as PUBACKs allow, recording what was acknowledged."""

    def __init__(self, port: int, key: str, tag: str) -> None:
        self.tag = tag
        self.lock = threading.Lock()
        self.acked_mids: List[int] = []
        self.mid_to_id: Dict[int, str] = {}
        self.sent = 0
        self.stop = threading.Event()
        self.dead = threading.Event()
        self.connected = threading.Event()
        c = mqtt.Client(client_id=DEVICE, clean_session=True, protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        c.username_pw_set(username_for("localhost", DEVICE), sas_for("localhost", DEVICE, key))
        c.max_inflight_messages_set(200)
        c.on_connect = lambda cl, ud, fl, rc: rc == 0 and self.connected.set()
        c.on_disconnect = lambda cl, ud, rc: self.dead.set()
        c.on_publish = self._on_publish
        self.client = c
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        assert self.connected.wait(10), "no CONNACK"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_publish(self, client, userdata, mid):
        with self.lock:
            self.acked_mids.append(mid)

    @property
    def acked(self) -> int:
        with self.lock:
            return len(self.acked_mids)

    def _run(self) -> None:
        i = 0
        topic = telemetry_topic(DEVICE, "%24.ct=application%2Fjson&%24.ce=utf-8&stream=" + self.tag)
        while not self.stop.is_set() and not self.dead.is_set() and i < 60000:
            if self.sent - self.acked >= 400:
                time.sleep(0.001)
                continue
            uid = f"{self.tag}-{i}"
            body = json.dumps({"id": uid, "pad": "x" * 100})
            info = self.client.publish(topic, body, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            with self.lock:
                self.mid_to_id[info.mid] = uid
            self.sent += 1
            i += 1

    def finish(self) -> Tuple[Set[str], Set[str]]:
        """Stops; returns (ids whose PUBACK arrived, ids handed to the socket)."""
        self.stop.set()
        self.thread.join(10)
        self.client.loop_stop()
        with self.lock:
            acked = {self.mid_to_id[m] for m in self.acked_mids}
            sent = set(self.mid_to_id.values())
        return acked, sent


def _kill_mid_stream(data_dir, tag: str, min_acks: int = 500) -> Tuple[Set[str], Set[str]]:
    proc, port, key = _spawn_hub(data_dir)
    try:
        s = Streamer(port, key, tag)
        deadline = time.monotonic() + 20
        while s.acked < min_acks and time.monotonic() < deadline and not s.dead.is_set():
            time.sleep(0.005)
        assert s.acked >= min_acks, f"only {s.acked} PUBACKs before the deadline"
        assert not s.dead.is_set()
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the publisher is still running
        assert proc.wait(10) == -signal.SIGKILL
        assert s.dead.wait(10), "the client did not notice the hub died"
        acked, sent = s.finish()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(sent) > len(acked) or len(sent) >= min_acks
    return acked, sent


def _stored(data_dir) -> List[fleethub.Message]:
    h = fleethub.Hub(data_dir, mqtt_port=None, mqtt_plain_port=None, https_port=None, log_level="warning")
    try:
        return list(h.events.read(device_id=DEVICE))
    finally:
        h.close()


def test_sigkill_loses_no_acknowledged_message(tmp_path):
    """SIGKILL of the hub mid-stream (after >= 500 PUBACKs), twice: every PUBACKed message is in the log."""
    data_dir = tmp_path / "crashdata"
    t0 = time.monotonic()

    acked1, sent1 = _kill_mid_stream(data_dir, "r1")
    msgs = _stored(data_dir)
    ids = [m.json()["id"] for m in msgs]  # every stored record decodes
    missing = acked1 - set(ids)
    assert not missing, f"{len(missing)} acknowledged messages lost after SIGKILL, e.g. {sorted(missing)[:5]}"
    assert set(ids) <= sent1, "the log holds messages that were never sent"
    assert len(ids) == len(set(ids)), "duplicated messages in the log"
    # per-connection order is kept
    assert [int(i.split("-")[1]) for i in ids] == sorted(int(i.split("-")[1]) for i in ids)
    assert all(m.content_type == "application/json" and m.properties == {"stream": "r1"} for m in msgs)

    # The hub restarts on the crashed data dir, takes new traffic, and survives a second SIGKILL as well.
    acked2, sent2 = _kill_mid_stream(data_dir, "r2")
    msgs = _stored(data_dir)
    ids = [m.json()["id"] for m in msgs]
    assert not (acked1 | acked2) - set(ids)
    assert set(ids) <= sent1 | sent2
    assert len(ids) == len(set(ids))
    seqs = [m.sequence_number for m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    # And it is fully usable afterwards.
    h = fleethub.Hub(data_dir, mqtt_port=None, mqtt_plain_port=0, https_port=None, log_level="warning")
    try:
        h.start()
        publish_many(h, h.devices.get(DEVICE), [b'{"id": "after"}'])
        last = list(h.events.read(device_id=DEVICE))[-1]
        assert last.json() == {"id": "after"}
        # Only the connection's own system event (deviceConnected) may sit between the old and the new message.
        assert seqs[-1] < last.sequence_number <= seqs[-1] + 2
    finally:
        h.close()
    assert time.monotonic() - t0 < 60


_CLOSE_WHILE_STREAMING = r'''
import sys, threading, time
sys.path.insert(0, sys.argv[3])
import fleethub
from conftest import raw_device, publish_packet, telemetry_topic

hub = fleethub.Hub(sys.argv[1], mqtt_port=None, mqtt_plain_port=0, https_port=None, log_level="warning")
hub.start()
dev = hub.devices.create("streamer")

def blast():
    c, _ = raw_device(hub, dev, clean_session=True)
    packet = publish_packet(telemetry_topic(dev.device_id), b"z" * 2000, qos=0)
    while c.try_send(packet):
        pass

threading.Thread(target=blast, daemon=True).start()
time.sleep(0.5)
if sys.argv[2] == "close":
    hub.close()
    print("closed", flush=True)
else:
    print("leaving it to interpreter exit", flush=True)
'''


@pytest.mark.parametrize("how", ["close", "exit"])
def test_closing_hub_while_devices_stream_does_not_crash(tmp_path, how):
    """hub.close() (or interpreter exit with the hub open) while devices are streaming telemetry ends the process
    normally, not with SIGSEGV, and the data dir reopens with the messages acknowledged before."""
    script = tmp_path / "close_while_streaming.py"
    script.write_text(_CLOSE_WHILE_STREAMING)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    for attempt in range(5):  # the crash depends on timing: a few attempts make it show reliably
        d = tmp_path / f"data{attempt}"
        try:
            p = subprocess.run([sys.executable, str(script), str(d), how, tests_dir], capture_output=True,
                               text=True, env=subprocess_env(), timeout=30)
            assert p.returncode == 0, (
                f"attempt {attempt}: the process ended with status {p.returncode}"
                f"{' (SIGSEGV)' if p.returncode == -signal.SIGSEGV else ''}; stderr tail: {p.stderr[-600:]!r}")
            h = fleethub.Hub(d, mqtt_port=None, mqtt_plain_port=None, https_port=None, log_level="warning")
            try:
                assert sum(1 for _ in h.events.read(limit=10)) > 0
            finally:
                h.close()
        finally:
            shutil.rmtree(d, ignore_errors=True)  # hundreds of MB each


def test_sigkill_during_reported_patches_keeps_every_acknowledged_version(tmp_path):
    """Reported patches stream while the hub is SIGKILLed: every version answered 204 is in the twin after the
    restart, the twin's content matches its version, and its TwinChangeEvents are all there."""
    data_dir = tmp_path / "twincrash"
    proc, port, key = _spawn_hub(data_dir)
    acked: List[int] = []
    lock = threading.Lock()
    dead = threading.Event()
    subscribed = threading.Event()

    def on_message(client, userdata, msg):
        m = re.match(r"\$iothub/twin/res/204/\?\$rid=(\d+)&\$version=(\d+)$", msg.topic)
        if m:
            with lock:
                acked.append(int(m.group(2)))

    c = mqtt.Client(client_id=DEVICE, clean_session=True, protocol=mqtt.MQTTv311, reconnect_on_failure=False)
    c.username_pw_set(username_for("localhost", DEVICE), sas_for("localhost", DEVICE, key))
    c.on_message = on_message
    c.on_disconnect = lambda cl, ud, rc: dead.set()
    c.on_subscribe = lambda *a: subscribed.set()
    try:
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        c.subscribe("$iothub/twin/res/#", qos=0)
        assert subscribed.wait(10)
        i = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                n = len(acked)
            if n >= 300:
                break
            if i - n < 50:  # a window of outstanding patches
                c.publish(f"$iothub/twin/PATCH/properties/reported/?$rid={i}", json.dumps({"seq": i}), qos=0)
                i += 1
            else:
                time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert dead.wait(10)
    finally:
        c.loop_stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(acked) >= 300
    assert acked == sorted(acked) and acked[0] == 2  # 204s came in version order
    h = fleethub.Hub(data_dir, mqtt_port=None, mqtt_plain_port=None, https_port=None, log_level="warning")
    try:
        t = h.twins.get(DEVICE)
        assert t.reported_version >= acked[-1]
        # Patch k (seq k) produced version k + 2: the stored content belongs to the stored version.
        assert t.reported == {"seq": t.reported_version - 2}
        events = list(h.events.read(device_id=DEVICE, source="TwinChangeEvents"))
        versions = [e.json()["properties"]["reported"]["$version"] for e in events]
        assert versions == list(range(2, t.reported_version + 1))
    finally:
        h.close()


_C2D_SENDER = r'''
import sys
import fleethub
hub = fleethub.Hub(sys.argv[1], mqtt_port=None, mqtt_plain_port=None, https_port=None, log_level="warning",
                   c2d_max_queue_depth=5000)
for d in ("q1", "q2"):
    if d not in hub.devices:
        hub.devices.create(d)
i = 0
while True:
    dev = "q1" if i % 2 == 0 else "q2"
    info = hub.c2d.send(dev, b"%d" % i, message_id="m%d" % i)   # returns once durable
    print(info.message_id, flush=True)
    i += 1
'''


def test_sigkill_while_sending_c2d_loses_no_queued_message(tmp_path):
    """C2D sends stream while the hub is SIGKILLed: every send that returned is queued after the restart,
    in order, and is delivered to the device."""
    data_dir = tmp_path / "c2dcrash"
    script = tmp_path / "sender.py"
    script.write_text(_C2D_SENDER)
    proc = subprocess.Popen([sys.executable, str(script), str(data_dir)], stdout=subprocess.PIPE, text=True,
                            env=subprocess_env())
    acked: List[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while len(acked) < 400 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert len(acked) >= 400, f"only {len(acked)} sends before the deadline"
    h = fleethub.Hub(data_dir, mqtt_port=None, mqtt_plain_port=0, https_port=None, log_level="warning", c2d_max_queue_depth=5000)
    try:
        h.start()
        from conftest import PUBLISH, puback_packet, raw_device
        got: Dict[str, List[int]] = {}
        for dev_id in ("q1", "q2"):
            dev = h.devices.get(dev_id)
            n = h.c2d.depth(dev_id)
            c, _ = raw_device(h, dev)
            c.subscribe(1, [(f"devices/{dev_id}/messages/devicebound/#", 1)])
            bodies = []
            for _ in range(n):
                p = c.read_packet(timeout=10)
                assert p.type == PUBLISH
                _, pid, body = p.publish_parts()
                bodies.append(int(body))
                c.send(puback_packet(pid))
            c.close()
            got[dev_id] = bodies
        for dev_id, bodies in got.items():
            assert bodies == sorted(bodies), "per-device order kept"
        stored = {f"m{i}" for b in got.values() for i in b}
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} acknowledged C2D messages lost, e.g. {sorted(missing)[:5]}"
    finally:
        h.close()
