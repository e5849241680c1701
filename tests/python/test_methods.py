"""Direct methods over raw MQTT: topics, rid correlation, timeouts, offline devices, limits, late answers."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

import fleethub
from conftest import PUBLISH, PUBACK, RawMqtt, publish_packet, raw_device, wait_until

METHODS = "$iothub/methods/POST/#"


def _method_device(hub, dev, **kw):
    c, _ = raw_device(hub, dev, **kw)
    assert c.subscribe(1, [(METHODS, 1)]) == [1]
    return c


def _next_request(c: RawMqtt, timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        p = c.read_packet(timeout=max(0.05, end - time.monotonic()))
        if p.type == PUBLISH:
            topic, pid, body = p.publish_parts()
            assert p.qos == 0 and pid is None  # IoT Hub sends method requests at QoS 0
            name = topic.split("/")[3]
            assert topic.startswith("$iothub/methods/POST/") and "?$rid=" in topic
            rid = topic.split("?$rid=", 1)[1]
            assert "&" not in rid  # nothing may follow $rid (csdk takes the rest of the level)
            int(rid, 16)  # hex, as the SDK samples parse it
            return name, rid, body
        assert p.type == PUBACK


def _invoke_in_thread(hub, *args, **kw):
    out = {}

    def run():
        try:
            out["r"] = hub.methods.invoke(*args, **kw)
        except Exception as e:  # noqa: BLE001
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_request_response_roundtrip(hub, device):
    c = _method_device(hub, device)
    t, out = _invoke_in_thread(hub, device.device_id, "setTemp", {"t": 21}, timeout=10)
    name, rid, body = _next_request(c)
    assert name == "setTemp" and json.loads(body) == {"t": 21}
    c.send(publish_packet(f"$iothub/methods/res/203/?$rid={rid}", b'{"done":[1,2]}', qos=1, packet_id=9))
    t.join(10)
    assert out["r"] == fleethub.MethodResult(203, {"done": [1, 2]})


def test_empty_and_non_json_response_bodies(hub, device):
    c = _method_device(hub, device)
    t, out = _invoke_in_thread(hub, device.device_id, "a", timeout=10)
    _, rid, body = _next_request(c)
    assert body == b"null"  # no payload: JSON null
    c.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid}", b""))
    t.join(10)
    assert out["r"] == fleethub.MethodResult(200, None)


def test_several_calls_in_flight_answered_out_of_order(hub, device):
    c = _method_device(hub, device)
    calls = [_invoke_in_thread(hub, device.device_id, f"m{i}", {"i": i}, timeout=10) for i in range(5)]
    reqs = [_next_request(c) for _ in range(5)]
    assert len({rid for _, rid, _ in reqs}) == 5
    for name, rid, body in reversed(reqs):
        c.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid}", json.dumps({"name": name}).encode()))
    for i, (t, out) in enumerate(calls):
        t.join(10)
        assert out["r"].payload == {"name": f"m{i}"}


def test_offline_or_unsubscribed_device_fails_at_once(hub, device):
    t0 = time.monotonic()
    with pytest.raises(fleethub.DeviceNotOnlineError, match="404103"):
        hub.methods.invoke(device.device_id, "x", timeout=30)
    c, _ = raw_device(hub, device)  # connected but not subscribed to methods
    with pytest.raises(fleethub.DeviceNotOnlineError):
        hub.methods.invoke(device.device_id, "x", timeout=30)
    assert time.monotonic() - t0 < 2
    with pytest.raises(fleethub.DeviceNotFoundError):
        hub.methods.invoke("ghost", "x")
    c.close()


def test_timeout_504_and_late_answer_dropped(hub, device, fleethub_records):
    c = _method_device(hub, device)
    t0 = time.monotonic()
    t, out = _invoke_in_thread(hub, device.device_id, "slow", timeout=5)
    _, rid, _ = _next_request(c)
    t.join(10)
    assert isinstance(out.get("e"), fleethub.MethodTimeoutError), out
    assert "504101" in str(out["e"])
    assert 4.9 <= time.monotonic() - t0 < 7
    # The late answer is dropped (logged), the connection stays up, and the next call works.
    c.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid}", b"{}"))
    assert fleethub_records.wait_for("response_dropped", rid=rid)
    t, out = _invoke_in_thread(hub, device.device_id, "next", timeout=10)
    _, rid2, _ = _next_request(c)
    assert rid2 != rid
    c.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid2}", b"1"))
    t.join(10)
    assert out["r"] == fleethub.MethodResult(200, 1)


def test_connect_timeout_waits_for_subscription(hub, device):
    t, out = _invoke_in_thread(hub, device.device_id, "wake", {"a": 1}, timeout=10, connect_timeout=10)
    time.sleep(0.5)
    assert "e" not in out and "r" not in out
    c = _method_device(hub, device)
    _, rid, body = _next_request(c)
    assert json.loads(body) == {"a": 1}
    c.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid}", b'"up"'))
    t.join(10)
    assert out["r"] == fleethub.MethodResult(200, "up")


def test_connect_timeout_expires_with_404103(hub, device):
    t0 = time.monotonic()
    with pytest.raises(fleethub.DeviceNotOnlineError, match="did not connect"):
        hub.methods.invoke(device.device_id, "wake", timeout=5, connect_timeout=1)
    assert 0.9 <= time.monotonic() - t0 < 3


def test_persistent_session_keeps_method_subscription(hub, device):
    c = _method_device(hub, device)
    c.close()
    c2, sp = raw_device(hub, device)
    assert sp == 1
    t, out = _invoke_in_thread(hub, device.device_id, "again", timeout=10)
    _, rid, _ = _next_request(c2)
    c2.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid}", b"{}"))
    t.join(10)
    assert out["r"].status == 200


def test_argument_rules(hub, device):
    _method_device(hub, device)
    for bad in ("a/b", "with space", "a$b", "", "q?x"):
        with pytest.raises(fleethub.InvalidArgumentError):
            hub.methods.invoke(device.device_id, bad)
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.methods.invoke(device.device_id, "m", timeout=4)
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.methods.invoke(device.device_id, "m", timeout=301)
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.methods.invoke(device.device_id, "m", connect_timeout=301)
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.methods.invoke(device.device_id, "m", object())
    with pytest.raises(fleethub.TooLargeError, match="131072"):
        hub.methods.invoke(device.device_id, "m", "x" * (128 * 1024))


def test_device_cannot_answer_for_another_device(hub):
    a = hub.devices.create("a")
    b = hub.devices.create("b")
    ca = _method_device(hub, a)
    cb = _method_device(hub, b)
    t, out = _invoke_in_thread(hub, "a", "m", timeout=5)
    _, rid, _ = _next_request(ca)
    cb.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid}", b'"forged"'))  # b's answer is not a's
    time.sleep(0.3)
    assert "r" not in out
    ca.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid}", b'"real"'))
    t.join(10)
    assert out["r"].payload == "real"


def test_async_invoke_many_concurrent(hub, device):
    c = _method_device(hub, device)
    stop = threading.Event()

    def responder():
        while not stop.is_set():
            try:
                _, rid, body = _next_request(c, timeout=0.5)
            except Exception:  # noqa: BLE001
                continue
            c.send(publish_packet(f"$iothub/methods/res/200/?$rid={rid}", body))

    th = threading.Thread(target=responder, daemon=True)
    th.start()

    async def go():
        return await asyncio.gather(*(hub.methods.invoke_async(device.device_id, "echo", i, timeout=20)
                                      for i in range(40)))
    try:
        res = asyncio.run(go())
    finally:
        stop.set()
        th.join(2)
    assert [r.payload for r in res] == list(range(40))


def test_pending_calls_fail_when_hub_stops(hub_factory, data_dir):
    h = hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0)
    d = h.devices.create("d")
    c = _method_device(h, d)
    t, out = _invoke_in_thread(h, "d", "m", timeout=60)
    _next_request(c)
    h.stop()
    t.join(10)
    assert isinstance(out.get("e"), fleethub.UnavailableError)
    with pytest.raises(fleethub.UnavailableError):
        h.methods.invoke("d", "m")


def test_too_many_calls_in_flight_to_one_device(hub, device):
    """At most 50 calls wait on one device (IoT Hub 403800 DeviceMaximumInflightMethodExceeded)."""
    c = _method_device(hub, device)

    async def go():
        calls = [asyncio.ensure_future(hub.methods.invoke_async(device.device_id, "m", i, timeout=5))
                 for i in range(50)]
        await asyncio.sleep(0.2)
        with pytest.raises(fleethub.ForbiddenError, match="in flight"):
            await hub.methods.invoke_async(device.device_id, "m", 50, timeout=5)
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(go())
    assert all(isinstance(r, fleethub.MethodTimeoutError) for r in results)
    assert hub._server.pending_methods == 0
    c.close()
