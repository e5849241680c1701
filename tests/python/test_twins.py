"""Twins over raw MQTT (the edges the SDKs never exercise) and through the Python API."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

import fleethub
from conftest import PUBLISH, PUBACK, RawMqtt, publish_packet, raw_device, wait_until

TWIN_RES = "$iothub/twin/res/#"
DESIRED = "$iothub/twin/PATCH/properties/desired/#"


def _twin_device(hub, dev, filters=(TWIN_RES, DESIRED), **kw):
    c, _ = raw_device(hub, dev, **kw)
    assert c.subscribe(1, [(f, 1) for f in filters]) == [1] * len(filters)
    return c


def _next_publish(c: RawMqtt, timeout=5.0):
    """The next PUBLISH from the hub (PUBACKs of our own publishes are skipped)."""
    end = time.monotonic() + timeout
    while True:
        p = c.read_packet(timeout=max(0.05, end - time.monotonic()))
        if p.type == PUBLISH:
            return p.publish_parts()
        assert p.type == PUBACK, f"unexpected packet type {p.type}"


def _request(c: RawMqtt, topic: str, body: bytes = b"", qos: int = 0, pid: int = 0):
    c.send(publish_packet(topic, body, qos=qos, packet_id=pid))
    return _next_publish(c)


def test_get_returns_desired_and_reported_with_versions(hub, device):
    c = _twin_device(hub, device)
    topic, pid, body = _request(c, "$iothub/twin/GET/?$rid=abc", b" ")
    assert topic == "$iothub/twin/res/200/?$rid=abc"
    assert pid is None  # QoS 0
    assert json.loads(body) == {"desired": {"$version": 1}, "reported": {"$version": 1}}


def test_reported_patch_versions_and_204(hub, device):
    """Each patch answers 204 with $rid first and the new reported $version; merge semantics apply."""
    c = _twin_device(hub, device)
    for i, (patch, expect) in enumerate([
        ({"a": 1, "b": {"c": 2, "d": [1, 2]}}, {"a": 1, "b": {"c": 2, "d": [1, 2]}}),
        ({"b": {"d": [3]}}, {"a": 1, "b": {"c": 2, "d": [3]}}),          # arrays replace
        ({"a": None, "b": {"c": None, "e": "x"}}, {"b": {"d": [3], "e": "x"}}),  # null deletes
        ({}, {"b": {"d": [3], "e": "x"}}),                                # an empty patch still bumps
    ]):
        topic, _, body = _request(c, f"$iothub/twin/PATCH/properties/reported/?$rid={i + 7}",
                                  json.dumps(patch).encode(), qos=1, pid=i + 1)
        assert topic == f"$iothub/twin/res/204/?$rid={i + 7}&$version={i + 2}"
        assert body == b""
        assert hub.twins.get(device.device_id).reported == expect
    _, _, body = _request(c, "$iothub/twin/GET/?$rid=g")
    assert json.loads(body)["reported"] == {"b": {"d": [3], "e": "x"}, "$version": 5}


@pytest.mark.parametrize("body, why", [
    (b"{not json", "not valid JSON"),
    (b"[1,2]", "object"),
    (b'"text"', "object"),
    (b'{"a.b": 1}', "."),
    (b'{"$x": 1}', "$"),
    (b'{"a b": 1}', "space"),
    (json.dumps({"n": 2 ** 53}).encode(), "range"),
    (json.dumps({"s": "x" * 5000}).encode(), "4096"),
    (json.dumps({"big": {f"k{i}": "v" * 100 for i in range(400)}}).encode(), "32"),
])
def test_bad_reported_patch_gets_400_with_its_rid(hub, device, body, why):
    """A malformed patch is answered 400 on the right $rid, the connection stays up, the twin is unchanged."""
    c = _twin_device(hub, device)
    topic, _, resp = _request(c, "$iothub/twin/PATCH/properties/reported/?$rid=bad-1", body)
    assert topic == "$iothub/twin/res/400/?$rid=bad-1"
    err = json.loads(resp)
    assert err["errorCode"] == 400004
    assert why in err["message"]
    assert hub.twins.get(device.device_id).reported_version == 1
    topic, _, _ = _request(c, "$iothub/twin/PATCH/properties/reported/?$rid=ok", b'{"fine": true}')
    assert topic == "$iothub/twin/res/204/?$rid=ok&$version=2"


def test_depth_limit_10_levels(hub, device):
    c = _twin_device(hub, device)
    ok = {"v": 1}
    for i in range(10):
        ok = {f"l{i}": ok}
    # ten nested objects + a leaf is the documented maximum
    nested10 = ok["l9"]
    topic, _, _ = _request(c, "$iothub/twin/PATCH/properties/reported/?$rid=1", json.dumps(nested10).encode())
    assert topic.startswith("$iothub/twin/res/204/")
    topic, _, _ = _request(c, "$iothub/twin/PATCH/properties/reported/?$rid=2", json.dumps({"x": ok}).encode())
    assert topic == "$iothub/twin/res/400/?$rid=2"


def test_csdk_style_decimal_rid_and_empty_get_body(hub, device):
    """csdk sends an empty GET body and a decimal rid that it reads back with atol(): echoed byte for byte."""
    c = _twin_device(hub, device)
    topic, _, body = _request(c, "$iothub/twin/GET/?$rid=65535", b"")
    assert topic == "$iothub/twin/res/200/?$rid=65535"
    assert json.loads(body)["desired"]["$version"] == 1


def test_no_response_without_subscription(hub, device):
    """A device that did not subscribe to $iothub/twin/res/# gets no response (as IoT Hub), but its patch applies."""
    c, _ = raw_device(hub, device)
    c.send(publish_packet("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"a":1}', qos=1, packet_id=3))
    p = c.read_packet()
    assert p.type == PUBACK
    assert wait_until(lambda: hub.twins.get(device.device_id).reported == {"a": 1})
    assert c.is_open_after(0.3)


def test_desired_notifications_carry_version_in_order(hub, device):
    """Every desired notification has $version in topic and body, in increasing order, nulls included."""
    c = _twin_device(hub, device)
    hub.twins.update(device.device_id, desired={"a": 1, "o": {"x": 1}})
    hub.twins.update(device.device_id, desired={"o": {"y": 2}})
    hub.twins.update(device.device_id, desired={"a": None})
    hub.twins.update(device.device_id, tags={"only": "tags"})  # no desired change: no notification
    hub.twins.replace(device.device_id, desired={"fresh": True})
    got = [_next_publish(c) for _ in range(4)]
    assert [t for t, _, _ in got] == [f"$iothub/twin/PATCH/properties/desired/?$version={v}" for v in (2, 3, 4, 5)]
    bodies = [json.loads(b) for _, _, b in got]
    assert bodies == [
        {"a": 1, "o": {"x": 1}, "$version": 2},
        {"o": {"y": 2}, "$version": 3},
        {"a": None, "$version": 4},
        {"fresh": True, "$version": 5},  # a replace sends the whole desired section
    ]
    with pytest.raises(Exception):
        _next_publish(c, timeout=0.5)


def test_many_desired_updates_arrive_in_version_order(hub, device):
    c = _twin_device(hub, device)
    import threading

    def writer(k):
        for i in range(25):
            hub.twins.update(device.device_id, desired={f"w{k}": i})

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    versions = [json.loads(_next_publish(c)[2])["$version"] for _ in range(100)]
    assert versions == list(range(2, 102))
    assert hub.twins.get(device.device_id).desired == {f"w{k}": 24 for k in range(4)}


def test_persistent_session_keeps_desired_subscription(hub, device):
    c = _twin_device(hub, device)
    c.close()
    c2, sp = raw_device(hub, device)
    assert sp == 1
    hub.twins.update(device.device_id, desired={"after": "reconnect"})
    topic, _, body = _next_publish(c2)
    assert topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert json.loads(body) == {"after": "reconnect", "$version": 2}


def test_python_api_update_replace_etag_and_errors(hub, device):
    t = hub.twins.get(device.device_id)
    assert (t.version, t.desired_version, t.reported_version) == (1, 1, 1)
    assert t.tags == {} and t.desired == {} and t.reported == {}
    assert t.to_dict()["deviceId"] == device.device_id
    assert t.connection_state == "Disconnected" and t.status == "enabled"
    t2 = hub.twins.update(device.device_id, tags={"site": {"room": 1}}, desired={"x": 1}, etag=t.etag)
    assert t2.etag != t.etag and t2.version == t.version + 1  # one write, one version
    assert t2.tags == {"site": {"room": 1}} and t2.desired == {"x": 1} and t2.desired_version == 2
    assert t2.metadata("desired")["x"]["$lastUpdatedVersion"] == 2
    with pytest.raises(fleethub.PreconditionFailedError, match="etag"):
        hub.twins.update(device.device_id, desired={"x": 2}, etag=t.etag)  # stale
    assert hub.twins.get(device.device_id).desired == {"x": 1}
    # IoT Hub's body shape and quoted etags work too
    t3 = hub.twins.update(device.device_id, {"properties": {"desired": {"y": 2}}}, etag=f'"{t2.etag}"')
    assert t3.desired == {"x": 1, "y": 2}
    t4 = hub.twins.replace(device.device_id, tags={"new": 1})
    assert t4.tags == {"new": 1} and t4.desired == {}
    assert hub.twins.update(device.device_id, desired={"z": 1}, etag="*").desired == {"z": 1}
    with pytest.raises(fleethub.InvalidArgumentError, match="reported"):
        hub.twins.update(device.device_id, {"properties": {"reported": {"a": 1}}})
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.twins.update(device.device_id, desired={"bad.key": 1})
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.twins.update(device.device_id, desired={"x": float("nan")})
    with pytest.raises(fleethub.InvalidArgumentError, match="nothing"):
        hub.twins.update(device.device_id, {})
    with pytest.raises(fleethub.DeviceNotFoundError):
        hub.twins.get("nope")
    with pytest.raises(fleethub.DeviceNotFoundError):
        hub.twins.update("nope", desired={"a": 1})
    with pytest.raises(fleethub.DeviceNotFoundError):
        hub.twins.get(device.device_id, module_id="nomod")


def test_twin_async_forms(hub, device):
    async def go():
        t = await hub.twins.update_async(device.device_id, desired={"a": 1})
        assert (await hub.twins.get_async(device.device_id)).desired == {"a": 1}
        t = await hub.twins.replace_async(device.device_id, desired={"b": 1})
        return t
    assert asyncio.run(go()).desired == {"b": 1}


def test_twin_is_deleted_with_the_device_and_survives_restart(hub_factory, data_dir):
    h = hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0)
    h.devices.create("d1")
    h.devices.create_module("d1", "m1")
    h.twins.update("d1", desired={"keep": 1}, tags={"t": 1})
    h.twins.update("d1", module_id="m1", desired={"mod": 1})
    h.close()
    h = hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0)
    t = h.twins.get("d1")
    assert t.desired == {"keep": 1} and t.tags == {"t": 1} and t.desired_version == 2
    assert h.twins.get("d1", module_id="m1").desired == {"mod": 1}
    h.devices.delete("d1")
    with pytest.raises(fleethub.DeviceNotFoundError):
        h.twins.get("d1")
    h.devices.create("d1")
    h.devices.create_module("d1", "m1")
    assert h.twins.get("d1").desired == {} and h.twins.get("d1").desired_version == 1
    assert h.twins.get("d1", module_id="m1").desired == {}


def test_service_view_fields(hub, device):
    d = hub.twins.get(device.device_id).to_dict()
    for k in ("deviceId", "etag", "deviceEtag", "status", "statusUpdateTime", "connectionState",
              "lastActivityTime", "cloudToDeviceMessageCount", "authenticationType", "x509Thumbprint",
              "version", "tags", "properties"):
        assert k in d, k
    assert d["authenticationType"] == "sas"
    assert d["deviceEtag"] == device.etag
    assert d["properties"]["desired"]["$metadata"]["$lastUpdated"].endswith("Z")
    assert d["properties"]["desired"]["$metadata"]["$lastUpdatedVersion"] == 1
    assert "$lastUpdatedVersion" not in d["properties"]["reported"]["$metadata"]
    c, _ = raw_device(hub, device)
    assert wait_until(lambda: hub.twins.get(device.device_id).connection_state == "Connected")
    c.close()
