"""The ``python -m fleethub`` command line: ``device create|list|show|delete`` and ``serve``."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import List

import pytest

from conftest import (
    PUBACK,
    RC_ACCEPTED,
    RawMqtt,
    publish_packet,
    sas_for,
    subprocess_env,
    telemetry_topic,
    username_for,
    start_serve,
)

pytestmark = pytest.mark.timeout(60)


def fh(*args, check=True, timeout=30) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "fleethub", *map(str, args)], capture_output=True, text=True,
                       env=subprocess_env(), timeout=timeout)
    if check:
        assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    return p


def test_device_create_show_list_delete(tmp_path):
    """device create prints the identity as JSON with a connection string; show, list and delete work on it."""
    d = tmp_path / "data"
    out = json.loads(fh("device", "create", "cli-dev", "--data-dir", d).stdout)
    assert out["deviceId"] == "cli-dev"
    assert out["status"] == "enabled"
    key = out["authentication"]["symmetricKey"]["primaryKey"]
    assert len(base64.b64decode(key)) == 32
    assert out["connectionString"] == f"HostName=localhost;DeviceId=cli-dev;SharedAccessKey={key}"

    given = base64.b64encode(b"g" * 32).decode()
    out2 = json.loads(fh("device", "create", "cli-off", "--data-dir", d, "--disabled", "--primary-key", given,
                         "--hostname", "hub.test").stdout)
    assert out2["status"] == "disabled"
    assert out2["authentication"]["symmetricKey"]["primaryKey"] == given
    assert out2["connectionString"].startswith("HostName=hub.test;")

    shown = json.loads(fh("device", "show", "cli-dev", "--data-dir", d).stdout)
    assert shown["authentication"]["symmetricKey"]["primaryKey"] == key
    assert shown["etag"] == out["etag"]

    lines = fh("device", "list", "--data-dir", d).stdout.strip().splitlines()
    assert lines == ["cli-dev\tenabled\tDisconnected", "cli-off\tdisabled\tDisconnected"]

    assert "deleted cli-dev" in fh("device", "delete", "cli-dev", "--data-dir", d).stdout
    assert fh("device", "list", "--data-dir", d).stdout.strip().splitlines() == ["cli-off\tdisabled\tDisconnected"]


def test_device_errors_exit_2(tmp_path):
    """Errors (duplicate, unknown, bad id) print 'fleethub: error:' and exit with status 2."""
    d = tmp_path / "data"
    fh("device", "create", "x", "--data-dir", d)
    for args in (("device", "create", "x"), ("device", "show", "nope"), ("device", "delete", "nope"),
                 ("device", "create", "a b")):
        p = fh(*args, "--data-dir", d, check=False)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("fleethub: error:"), p.stderr


def test_device_env_data_dir(tmp_path):
    """FLEETHUB_DATA_DIR selects the data dir when --data-dir is not given."""
    d = tmp_path / "envdata"
    env = subprocess_env()
    env["FLEETHUB_DATA_DIR"] = str(d)
    p = subprocess.run([sys.executable, "-m", "fleethub", "device", "create", "envdev"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "envdev" in fh("device", "list", "--data-dir", d).stdout


def _start_serve(args: List[str]):
    return start_serve(args)


def test_serve_prints_details_accepts_clients_and_stops_on_sigterm(tmp_path):
    """serve prints hostname, ports, CA path and service string, serves MQTT, and exits 0 on SIGTERM."""
    d = tmp_path / "data"
    dev = json.loads(fh("device", "create", "served", "--data-dir", d).stdout)
    key = dev["authentication"]["symmetricKey"]["primaryKey"]
    proc, text = _start_serve(["--data-dir", str(d), "--hostname", "localhost", "--mqtt-port", "0",
                               "--mqtt-plain-port", "0", "--https-port", "0"])
    try:
        assert "fleethub is running" in text, text
        assert re.search(r"^\s*hostname\s+localhost$", text, re.M), text
        plain = int(re.search(r"^\s*MQTT plain\s+(\d+)$", text, re.M).group(1))
        tls = int(re.search(r"^\s*MQTT/TLS\s+(\d+)$", text, re.M).group(1))
        assert plain > 0 and tls > 0 and plain != tls
        ca = re.search(r"^\s*CA cert\s+(\S+)", text, re.M).group(1)
        assert os.path.isfile(ca)
        with open(ca) as f:
            assert f.read().startswith("-----BEGIN CERTIFICATE-----")
        https = int(re.search(r"^\s*HTTPS\s+(\d+)", text, re.M).group(1))
        assert https > 0 and https not in (plain, tls)
        # HTTPS is not on 443 here, so the service string names the port (the REST SDK honours it).
        assert re.search(r"^\s*service\s+HostName=localhost:" + str(https) +
                         r";SharedAccessKeyName=iothubowner;SharedAccessKey=\S+$", text, re.M), text

        # plain MQTT
        c = RawMqtt(plain)
        try:
            rc, sp = c.mqtt_connect("served", username_for("localhost", "served"), sas_for("localhost", "served", key),
                                    clean_session=True)
            assert (rc, sp) == (RC_ACCEPTED, 0)
            c.send(publish_packet(telemetry_topic("served"), b"via cli", qos=1, packet_id=1))
            assert c.expect(PUBACK).packet_id == 1
        finally:
            c.close()
        # MQTT over TLS, trusting the printed CA
        import paho.mqtt.client as mqtt

        ev = threading.Event()
        res = {}
        cl = mqtt.Client(client_id="served", clean_session=True, protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        cl.username_pw_set(username_for("localhost", "served"), sas_for("localhost", "served", key))
        cl.tls_set(ca_certs=ca)
        cl.on_connect = lambda *a: (res.setdefault("rc", a[3]), ev.set())
        cl.connect("localhost", tls)
        cl.loop_start()
        try:
            assert ev.wait(10)
            assert res["rc"] == 0
        finally:
            cl.disconnect()
            cl.loop_stop()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # The data dir is released: the CLI can use it again, and the message is there.
    import fleethub

    h = fleethub.Hub(d, mqtt_port=None, https_port=None, log_level="warning")
    try:
        assert [m.body for m in h.events.read()] == [b"via cli"]
    finally:
        h.close()


def test_serve_with_tls_off_and_create_device(tmp_path):
    """serve --mqtt-port off prints 'off' for TLS; --create-device registers the device and prints its string."""
    d = tmp_path / "data"
    proc, text = _start_serve(["--data-dir", str(d), "--mqtt-port", "off", "--mqtt-plain-port", "0",
                               "--https-port", "off", "--create-device", "auto1", "--create-device", "auto2"])
    try:
        assert re.search(r"^\s*MQTT/TLS\s+off$", text, re.M), text
        assert "CA cert" not in text
        devs = re.findall(r"^\s*device\s+HostName=localhost;DeviceId=(\S+?);SharedAccessKey=\S+$", text, re.M)
        assert devs == ["auto1", "auto2"]
        time.sleep(0.3)  # past the start-up window (see test_serve_sigterm_right_after_ready_banner_exits_cleanly)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "auto1\tenabled" in fh("device", "list", "--data-dir", d).stdout


def test_device_command_refused_while_hub_holds_data_dir(tmp_path):
    """While a serving hub holds the data dir, the device command fails with an error instead of corrupting it."""
    d = tmp_path / "data"
    proc, text = _start_serve(["--data-dir", str(d), "--mqtt-port", "off", "--mqtt-plain-port", "0",
                               "--https-port", "off"])
    try:
        assert "fleethub is running" in text
        t0 = time.monotonic()
        p = fh("device", "create", "late", "--data-dir", d, check=False, timeout=20)
        assert p.returncode != 0
        assert p.returncode == 2
        assert "in use" in p.stderr, p.stderr
        assert time.monotonic() - t0 < 20
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


_DEADLOCK_SCRIPT = r'''
import os, signal, sys, threading
import fleethub

hub = fleethub.Hub(sys.argv[1], mqtt_port=None, mqtt_plain_port=0, https_port=None, log_level="warning")
hub.start()
cond = getattr(getattr(hub, "_stopped", None), "_cond", None)
fired = []
lock = threading.Lock()


def fire():
    with lock:
        if fired:
            return
        fired.append(1)
    os.kill(os.getpid(), signal.SIGTERM)


def tracer(frame, event, arg):
    # Deliver SIGTERM at one precise moment: while serve_forever's Event.wait() still holds the Event's
    # internal lock (it is about to release it). A real SIGTERM can land there too; this only removes the luck.
    if event == "call" and cond is not None and frame.f_code.co_name == "__exit__" and frame.f_locals.get("self") is cond:
        fire()
    return None


# An implementation that never waits on that lock still gets its SIGTERM, a little later, from a timer.
threading.Timer(1.0, fire).start()
sys.settrace(tracer)
print("serving", flush=True)
hub.serve_forever()
sys.settrace(None)
print("stopped cleanly" if fired else "signal never sent", flush=True)
'''


def test_serve_forever_sigterm_while_waiting_does_not_deadlock(tmp_path):
    """Hub.serve_forever() stops on a SIGTERM that arrives while its wait loop holds the stop Event's lock
    (the handler must not block on a lock the interrupted main thread holds)."""
    script = tmp_path / "serve_forever_sigterm.py"
    script.write_text(_DEADLOCK_SCRIPT)
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path / "data")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        out, err = p.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        pytest.fail("serve_forever() deadlocked in its SIGTERM handler (threading.Event.set() called from a "
                    f"signal handler while Event.wait() held the lock); stdout={out!r}")
    assert "stopped cleanly" in out, (out, err)
    assert p.returncode == 0, err


_BANNER_SCRIPT = r'''
import os, signal, sys
from fleethub import cli

def tracer(frame, event, arg):
    # The banner ("... (stop: Ctrl-C)") has been printed and flushed when serve_forever() is entered:
    # a supervisor that saw it may send SIGTERM now.
    if event == "call" and frame.f_code.co_name == "serve_forever":
        sys.settrace(None)
        os.kill(os.getpid(), signal.SIGTERM)
    return None

sys.settrace(tracer)
sys.exit(cli.main(sys.argv[1:]))
'''


def test_serve_sigterm_right_after_ready_banner_exits_cleanly(tmp_path):
    """`fleethub serve` handles a SIGTERM that arrives right after it printed its ready banner: exit status 0
    after a clean close, not death by the signal's default action."""
    script = tmp_path / "serve_banner_sigterm.py"
    script.write_text(_BANNER_SCRIPT)
    d = tmp_path / "data"
    p = subprocess.Popen([sys.executable, str(script), "serve", "--data-dir", str(d), "--mqtt-port", "off",
                          "--mqtt-plain-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=subprocess_env())
    try:
        out, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
    assert "Register a device" in out, (out, err)
    assert p.returncode == 0, f"exit status {p.returncode} after SIGTERM following the ready banner; stderr={err!r}"


def test_twin_show_and_update(tmp_path):
    """`fleethub twin update` merges tags/desired (etag-checked); `twin show` prints the service-API twin."""
    data = str(tmp_path / "d")
    fh("device", "create", "tw1", "--data-dir", data)
    r = fh("twin", "update", "tw1", "--data-dir", data, "--tags", '{"site": "lab"}', "--desired", '{"rate": 5}')
    t = json.loads(r.stdout)
    assert t["tags"] == {"site": "lab"} and t["properties"]["desired"]["rate"] == 5
    assert t["properties"]["desired"]["$version"] == 2
    r = fh("twin", "show", "tw1", "--data-dir", data)
    assert json.loads(r.stdout)["etag"] == t["etag"]
    r = fh("twin", "update", "tw1", "--data-dir", data, "--desired", '{"rate": 6}', "--etag", "AAAAAAAAAAE=",
           check=False)
    assert r.returncode == 2 and "etag" in r.stderr
    r = fh("twin", "show", "nope", "--data-dir", data, check=False)
    assert r.returncode == 2 and "not registered" in r.stderr


def test_query_command(tmp_path):
    """`fleethub query` runs the IoT Hub query language over a data dir; syntax errors exit 2 with the position."""
    data = str(tmp_path / "d")
    for dev, site in (("q1", "lab"), ("q2", "lab"), ("q3", "plant")):
        fh("device", "create", dev, "--data-dir", data)
        fh("twin", "update", dev, "--data-dir", data, "--tags", json.dumps({"site": site}))
    r = fh("query", "SELECT deviceId FROM devices WHERE tags.site = 'lab'", "--data-dir", data)
    assert sorted(x["deviceId"] for x in json.loads(r.stdout)) == ["q1", "q2"]
    r = fh("query", "SELECT tags.site AS site, COUNT() AS n FROM devices GROUP BY tags.site", "--data-dir", data,
           "--format", "table")
    rows = sorted(json.loads(line)["site"] + "=" + str(json.loads(line)["n"]) for line in r.stdout.splitlines())
    assert rows == ["lab=2", "plant=1"]
    r = fh("query", "SELECT * FROM devices WHERE", "--data-dir", data, check=False)
    assert r.returncode == 2 and "position" in r.stderr
